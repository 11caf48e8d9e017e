#include "ddpm/data/mnist.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include "ddpm/core/check.h"
#include "ddpm/data/dataset.h"
#include "ddpm/io/file.h"

namespace ddpm {

static uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

static std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08X", v);
  return buf;
}

namespace {

// What an IDX header announces.
struct IdxHeader {
  std::vector<uint64_t> dims;
  size_t header_bytes = 0;  // 4 + 4 * ndims
  uint64_t data_bytes = 0;  // the product of the dims, saturated at UINT64_MAX
};

constexpr uint64_t kUnknownSize = UINT64_MAX;  // gzip output: its size is known only once read

std::string dims_text(const IdxHeader& h) {
  std::string text;
  for (size_t d = 0; d < h.dims.size(); d++) text += (d ? " x " : "") + std::to_string(h.dims[d]);
  return text;
}

// Checks the magic, the dimension count and the announced size (against the file's
// size, unless kUnknownSize, and against kIdxMaxDataBytes), from `head`, the file's first
// head_size bytes (the header, or less when the file is shorter).
IdxHeader idx_header(const uint8_t* head, size_t head_size, uint64_t file_size, const std::string& source,
                     uint32_t want_ndims, const char* what) {
  const uint32_t want_magic = 0x00000800u | want_ndims;
  DDPM_CHECK(head_size >= 4, "idx: '" << source << "' is " << head_size
                                      << " bytes, too short for the IDX magic: truncated at byte " << head_size
                                      << "; download it again");
  const uint32_t magic = be32(head);
  DDPM_CHECK(!(head[0] == 0x1F && head[1] == 0x8B), "idx: '" << source << "' is gzip-compressed; name it with a "
                                                                ".gz suffix or gunzip it");
  DDPM_CHECK(magic != (0x00000800u | (want_ndims == 3 ? 1u : 3u)),
             "idx: '" << source << "' is an IDX " << (want_ndims == 3 ? "labels" : "images") << " file (magic "
                      << hex32(magic) << "), expected " << what << " (" << hex32(want_magic)
                      << "): are the file names swapped?");
  DDPM_CHECK(head[0] == 0 && head[1] == 0 && head[2] == 0x08,
             "idx: '" << source << "' has bad magic " << hex32(magic) << ", expected " << hex32(want_magic) << " for "
                      << what << ": not an IDX file of unsigned bytes");
  DDPM_CHECK(head[3] == want_ndims, "idx: '" << source << "' has " << int(head[3]) << " dimensions (magic "
                                             << hex32(magic) << "), expected " << want_ndims << " for " << what);
  IdxHeader h;
  h.header_bytes = 4 + 4 * size_t(want_ndims);
  DDPM_CHECK(head_size >= h.header_bytes, "idx: '" << source << "' is truncated at byte " << head_size << ", inside the "
                                                   << h.header_bytes << "-byte header; download it again");
  h.data_bytes = 1;
  for (uint32_t d = 0; d < want_ndims; d++) {
    h.dims.push_back(be32(head + 4 + 4 * d));
    if (h.dims.back() == 0) h.data_bytes = 0;
    else if (h.data_bytes > UINT64_MAX / h.dims.back()) h.data_bytes = UINT64_MAX;
    else h.data_bytes *= h.dims.back();
  }
  const std::string dims = dims_text(h);
  if (file_size != kUnknownSize) {
    const uint64_t data_size = file_size - h.header_bytes;
    DDPM_CHECK(data_size >= h.data_bytes,
               "idx: '" << source << "' is truncated at byte " << file_size << ": its header announces " << dims << " = "
                        << (h.data_bytes == UINT64_MAX ? std::string("more") : std::to_string(h.header_bytes + h.data_bytes))
                        << " bytes; download it again");
    DDPM_CHECK(data_size == h.data_bytes, "idx: '" << source << "' has " << data_size - h.data_bytes
                                                   << " bytes after the " << dims
                                                   << " its header announces: corrupt or not an IDX file");
  }
  DDPM_CHECK(h.data_bytes <= kIdxMaxDataBytes,
             "idx: '" << source << "' announces " << dims << " = "
                      << (h.data_bytes == UINT64_MAX ? std::string("more than 2^64") : std::to_string(h.data_bytes))
                      << " bytes of data, more than the " << kIdxMaxDataBytes
                      << " this reader accepts: corrupt, or not an MNIST-sized dataset");
  return h;
}

// The images tensor a checked header announces, [N, 1, H, W].
Tensor allocate_images(const IdxHeader& h, const std::string& source) {
  const uint64_t N = h.dims[0], H = h.dims[1], W = h.dims[2];
  DDPM_CHECK(H >= 1 && W >= 1 && H <= 4096 && W <= 4096,
             "idx: '" << source << "' has images of " << H << " x " << W << " pixels; expected 1..4096 on each side");
  try {
    return Tensor(Shape{int64_t(N), 1, int64_t(H), int64_t(W)});
  } catch (const Error& error) {  // out of memory: say which file
    DDPM_FAIL("idx: '" << source << "' holds " << dims_text(h) << " pixels, which do not fit in memory as floats: "
                       << error.what());
  }
}

// Reads an IDX file: the header first, checked (against the file's real size for a plain
// file, against kIdxMaxDataBytes always) before `allocate` is called with it; then exactly
// the data it announces, passed to take(bytes, n, offset in the data) in pieces. A ".gz"
// name is read through `gzip -dc`, whose output must end where the header says: more
// (a gzip bomb) or less is an error, and nothing beyond the announced size is read.
void read_idx(const std::string& path, uint32_t want_ndims, const char* what,
              const std::function<void(const IdxHeader&)>& allocate,
              const std::function<void(const uint8_t*, size_t, uint64_t)>& take) {
  const size_t header_bytes = 4 + 4 * size_t(want_ndims);
  uint8_t head[16], chunk[1 << 16];
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (!gz) {
    InputFile file(path);  // refuses what has no real size (/dev/zero, a pipe, a directory)
    const size_t head_size = static_cast<size_t>(std::min<uint64_t>(file.size(), header_bytes));
    file.read_at(0, head, head_size);
    const IdxHeader h = idx_header(head, head_size, file.size(), path, want_ndims, what);
    allocate(h);
    for (uint64_t done = 0; done < h.data_bytes;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof(chunk), h.data_bytes - done));
      file.read_at(h.header_bytes + done, chunk, n);
      take(chunk, n, done);
      done += n;
    }
    return;
  }
  GzipStream stream(path);
  const size_t head_size = stream.read(head, header_bytes);
  if (head_size < header_bytes) stream.finish();  // the output ended: gzip's own error first, if any
  const IdxHeader h = idx_header(head, head_size, kUnknownSize, path, want_ndims, what);
  allocate(h);
  for (uint64_t done = 0; done < h.data_bytes;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof(chunk), h.data_bytes - done));
    const size_t got = stream.read(chunk, n);
    take(chunk, got, done);
    done += got;
    if (got < n) {
      stream.finish();
      DDPM_FAIL("idx: '" << path << "' is truncated at byte " << h.header_bytes + done
                         << " (decompressed): its header announces " << dims_text(h) << " = "
                         << h.header_bytes + h.data_bytes << " bytes; download it again");
    }
  }
  uint8_t extra;
  if (stream.read(&extra, 1) == 1) {
    stream.finish(/*stop=*/true);
    DDPM_FAIL("idx: '" << path << "' decompresses to more than the " << h.header_bytes + h.data_bytes
                       << " bytes its header announces (" << dims_text(h) << "): corrupt or not an IDX file");
  }
  stream.finish();
}

}  // namespace

Tensor parse_idx_images(const uint8_t* bytes, size_t size, const std::string& source) {
  const IdxHeader h = idx_header(bytes, size, size, source, 3, "IDX images");
  Tensor images = allocate_images(h, source);  // [N, 1, H, W]
  bytes_to_unit_range(images.data(), bytes + h.header_bytes, static_cast<size_t>(h.data_bytes));
  return images;
}

std::vector<uint8_t> parse_idx_labels(const uint8_t* bytes, size_t size, const std::string& source) {
  const IdxHeader h = idx_header(bytes, size, size, source, 1, "IDX labels");
  return std::vector<uint8_t>(bytes + h.header_bytes, bytes + size);
}

Tensor read_idx_images(const std::string& path) {
  Tensor images;
  read_idx(
      path, 3, "IDX images", [&](const IdxHeader& h) { images = allocate_images(h, path); },
      [&](const uint8_t* p, size_t n, uint64_t offset) { bytes_to_unit_range(images.data() + offset, p, n); });
  return images;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  std::vector<uint8_t> labels;
  read_idx(
      path, 1, "IDX labels", [&](const IdxHeader& h) { labels.resize(static_cast<size_t>(h.data_bytes)); },
      [&](const uint8_t* p, size_t n, uint64_t offset) { std::copy(p, p + n, labels.data() + offset); });
  return labels;
}

MnistSplit load_mnist_files(const std::string& images_path, const std::string& labels_path) {
  MnistSplit split;
  split.images = read_idx_images(images_path);
  split.labels = read_idx_labels(labels_path);
  DDPM_CHECK(split.images.size(0) == int64_t(split.labels.size()),
             "mnist: '" << images_path << "' has " << split.images.size(0) << " images but '" << labels_path << "' has "
                        << split.labels.size() << " labels; the files come from different sets (train vs t10k?)");
  for (size_t i = 0; i < split.labels.size(); i++)
    DDPM_CHECK(split.labels[i] < 10, "mnist: '" << labels_path << "' label " << i << " is " << int(split.labels[i])
                                                << ", outside 0..9: not an MNIST label file");
  return split;
}

static bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The first existing spelling of "<prefix>-<kind>-<idx>-ubyte" in dir.
static std::string find_idx_file(const std::string& dir, const std::string& prefix, const std::string& kind,
                                 const std::string& idx) {
  std::vector<std::string> tried;
  for (const char* sep : {"-", "."})
    for (const char* suffix : {"", ".gz"}) {
      std::string name = prefix + "-" + kind + sep + idx + "-ubyte" + suffix;
      if (is_file(dir + "/" + name)) return dir + "/" + name;
      tried.push_back(name);
    }
  std::string list;
  for (size_t i = 0; i < tried.size(); i++) list += (i ? ", " : "") + tried[i];
  DDPM_FAIL("mnist: no " << prefix << " " << kind << " in '" << dir << "': looked for " << list
                         << ". Run `make data` (or tools/fetch_mnist.sh DIR), or point --data at a folder with the "
                            "four MNIST files, gzipped or not");
}

MnistSplit load_mnist(const std::string& dir, const std::string& split) {
  DDPM_CHECK(split == "train" || split == "test", "mnist: split '" << split << "' must be 'train' or 'test'");
  const std::string prefix = split == "train" ? "train" : "t10k";
  std::string images = find_idx_file(dir, prefix, "images", "idx3");
  std::string labels = find_idx_file(dir, prefix, "labels", "idx1");
  return load_mnist_files(images, labels);
}

}  // namespace ddpm

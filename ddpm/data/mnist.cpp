#include "ddpm/data/mnist.h"

#include <sys/stat.h>

#include <cstdio>

#include "ddpm/core/check.h"
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

// Checks the magic and the dimension count, and returns the dimensions.
static std::vector<uint64_t> idx_header(const uint8_t* bytes, size_t size, const std::string& source,
                                        uint32_t want_ndims, const char* what) {
  const uint32_t want_magic = 0x00000800u | want_ndims;
  DDPM_CHECK(size >= 4, "idx: '" << source << "' is " << size << " bytes, too short for the IDX magic: truncated at byte "
                                 << size << "; download it again");
  const uint32_t magic = be32(bytes);
  DDPM_CHECK(!(bytes[0] == 0x1F && bytes[1] == 0x8B), "idx: '" << source << "' is gzip-compressed; name it with a "
                                                                  ".gz suffix or gunzip it");
  DDPM_CHECK(magic != (0x00000800u | (want_ndims == 3 ? 1u : 3u)),
             "idx: '" << source << "' is an IDX " << (want_ndims == 3 ? "labels" : "images") << " file (magic "
                      << hex32(magic) << "), expected " << what << " (" << hex32(want_magic)
                      << "): are the file names swapped?");
  DDPM_CHECK(bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08,
             "idx: '" << source << "' has bad magic " << hex32(magic) << ", expected " << hex32(want_magic) << " for "
                      << what << ": not an IDX file of unsigned bytes");
  DDPM_CHECK(bytes[3] == want_ndims, "idx: '" << source << "' has " << int(bytes[3]) << " dimensions (magic "
                                              << hex32(magic) << "), expected " << want_ndims << " for " << what);
  const size_t header = 4 + 4 * size_t(want_ndims);
  DDPM_CHECK(size >= header, "idx: '" << source << "' is truncated at byte " << size << ", inside the " << header
                                      << "-byte header; download it again");
  std::vector<uint64_t> dims;
  uint64_t count = 1;  // bytes of data the header announces, saturated beyond the file size
  for (uint32_t d = 0; d < want_ndims; d++) {
    dims.push_back(be32(bytes + 4 + 4 * d));
    if (dims.back() == 0) count = 0;
    else if (count > size / dims.back()) count = UINT64_MAX;
    else count *= dims.back();
  }
  std::string dims_str;
  for (size_t d = 0; d < dims.size(); d++) dims_str += (d ? " x " : "") + std::to_string(dims[d]);
  DDPM_CHECK(count != UINT64_MAX && size - header >= count,
             "idx: '" << source << "' is truncated at byte " << size << ": its header announces " << dims_str << " = "
                      << (count == UINT64_MAX ? std::string("more") : std::to_string(header + count))
                      << " bytes; download it again");
  DDPM_CHECK(size - header == count, "idx: '" << source << "' has " << size - header - count
                                              << " bytes after the " << dims_str
                                              << " its header announces: corrupt or not an IDX file");
  return dims;
}

Tensor parse_idx_images(const uint8_t* bytes, size_t size, const std::string& source) {
  std::vector<uint64_t> dims = idx_header(bytes, size, source, 3, "IDX images");
  const uint64_t N = dims[0], H = dims[1], W = dims[2];
  DDPM_CHECK(H >= 1 && W >= 1 && H <= 4096 && W <= 4096,
             "idx: '" << source << "' has images of " << H << " x " << W << " pixels; expected 1..4096 on each side");
  Tensor images(Shape{int64_t(N), 1, int64_t(H), int64_t(W)});  // [N, 1, H, W]
  const uint8_t* pixels = bytes + 16;
  float* x = images.data();
  for (int64_t i = 0; i < images.numel(); i++) x[i] = pixels[i] / 127.5f - 1.0f;  // [0, 255] -> [-1, 1]
  return images;
}

std::vector<uint8_t> parse_idx_labels(const uint8_t* bytes, size_t size, const std::string& source) {
  idx_header(bytes, size, source, 1, "IDX labels");
  return std::vector<uint8_t>(bytes + 8, bytes + size);
}

Tensor read_idx_images(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
  return parse_idx_images(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
  return parse_idx_labels(bytes.data(), bytes.size(), path);
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

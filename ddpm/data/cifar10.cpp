#include "ddpm/data/cifar10.h"

#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"

namespace ddpm {

namespace {

// The number of records in a file of `size` bytes, after checking the size.
int64_t record_count(uint64_t size, const std::string& source) {
  DDPM_CHECK(size > 0, "cifar10: '" << source << "' is empty; download it again");
  DDPM_CHECK(size <= kCifarMaxFileBytes, "cifar10: '" << source << "' is " << size << " bytes, more than the "
                                                      << kCifarMaxFileBytes
                                                      << " this reader accepts: not a CIFAR-10 batch file");
  DDPM_CHECK(size % kCifarRecordBytes == 0,
             "cifar10: '" << source << "' is " << size << " bytes, not a whole number of " << kCifarRecordBytes
                          << "-byte records (1 label byte + 3072 pixels): record " << size / kCifarRecordBytes
                          << " is truncated at byte " << size << ", after " << size % kCifarRecordBytes << " of its "
                          << kCifarRecordBytes << " bytes; download it again (CIFAR-100's files, with 2 label bytes, "
                          << "are not read)");
  return static_cast<int64_t>(size / kCifarRecordBytes);
}

// Records [first, first + n) of `source`, from `bytes`, into images [.., 3, 32, 32] and
// labels, both indexed from `at`.
void decode_records(const uint8_t* bytes, int64_t n, int64_t first, const std::string& source, Dataset& out,
                    int64_t at) {
  for (int64_t r = 0; r < n; r++) {
    const uint8_t* record = bytes + r * kCifarRecordBytes;
    DDPM_CHECK(record[0] <= 9, "cifar10: '" << source << "' record " << first + r << " (at byte "
                                            << (first + r) * int64_t(kCifarRecordBytes) << ") has label "
                                            << int(record[0]) << ", outside 0..9: not a CIFAR-10 batch file");
    out.labels[size_t(at + r)] = record[0];
    bytes_to_unit_range(out.images.data() + (at + r) * int64_t(kCifarImageBytes), record + 1, kCifarImageBytes);
  }
}

Dataset allocate(int64_t n, const std::string& what) {
  Dataset d;
  try {
    d.images = Tensor(Shape{n, 3, 32, 32});
  } catch (const Error& error) {  // out of memory: say for what
    DDPM_FAIL("cifar10: " << n << " images of " << what << " do not fit in memory as floats: " << error.what());
  }
  d.labels.assign(size_t(n), 0);
  d.num_classes = 10;
  return d;
}

// Reads every record of `file` into out from index `at`, a piece at a time.
void read_records(const InputFile& file, int64_t n, Dataset& out, int64_t at) {
  constexpr int64_t kPiece = 1024;  // records per read: 3 MB
  std::vector<uint8_t> buffer(size_t(std::min(n, kPiece)) * kCifarRecordBytes);
  for (int64_t first = 0; first < n; first += kPiece) {
    const int64_t count = std::min(kPiece, n - first);
    file.read_at(uint64_t(first) * kCifarRecordBytes, buffer.data(), size_t(count) * kCifarRecordBytes);
    decode_records(buffer.data(), count, first, file.path(), out, at + first);
  }
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

Dataset parse_cifar10(const uint8_t* bytes, size_t size, const std::string& source) {
  const int64_t n = record_count(size, source);
  Dataset d = allocate(n, "'" + source + "'");
  decode_records(bytes, n, 0, source, d, 0);
  return d;
}

Dataset read_cifar10_file(const std::string& path) {
  InputFile file(path);  // refuses what has no real size (/dev/zero, a pipe, a folder)
  const int64_t n = record_count(file.size(), path);
  Dataset d = allocate(n, "'" + path + "'");
  read_records(file, n, d, 0);
  return d;
}

Dataset load_cifar10(const std::string& dir, const std::string& split) {
  DDPM_CHECK(split == "train" || split == "test", "cifar10: split '" << split << "' must be 'train' or 'test'");
  std::vector<std::string> names;
  if (split == "train")
    for (int k = 1; k <= 5; k++) names.push_back("data_batch_" + std::to_string(k) + ".bin");
  else
    names.push_back("test_batch.bin");
  // The files, in dir or in the folder the archive unpacks to.
  std::string folder = dir;
  if (!is_file(dir + "/" + names[0]) && is_file(dir + "/cifar-10-batches-bin/" + names[0]))
    folder = dir + "/cifar-10-batches-bin";
  std::string missing;
  for (const std::string& name : names)
    if (!is_file(folder + "/" + name)) missing += (missing.empty() ? "" : ", ") + name;
  DDPM_CHECK(missing.empty(), "cifar10: no " << missing << " in '" << dir
                                             << "' (nor in its cifar-10-batches-bin/). Download the binary version, "
                                                "cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/"
                                                "cifar.html, unpack it (tar xzf) and pass --data DIR");
  // Size every file up first, so the images are allocated once for all of them.
  std::vector<std::unique_ptr<InputFile>> files;
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const std::string& name : names) {
    files.push_back(std::make_unique<InputFile>(folder + "/" + name));
    counts.push_back(record_count(files.back()->size(), files.back()->path()));
    total += counts.back();
  }
  Dataset d = allocate(total, "the " + split + " split in '" + folder + "'");
  int64_t at = 0;
  for (size_t f = 0; f < files.size(); f++) {
    read_records(*files[f], counts[f], d, at);
    at += counts[f];
  }
  return d;
}

}  // namespace ddpm

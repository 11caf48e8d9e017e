#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/data/mnist.h"
#include "ddpm/io/file.h"
#include "tests/idx_files.h"
#include "tests/memory_limit.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::TempDir;
using testing::check_clean_error;
using testing::idx_images;
using testing::idx_labels;
using testing::put_be32;

static std::string images_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_idx_images(bytes.data(), bytes.size(), "x.idx");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

static std::string labels_error(const std::vector<uint8_t>& bytes) {
  try {
    parse_idx_labels(bytes.data(), bytes.size(), "y.idx");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

static bool have_gzip() { return std::system("gzip --version >/dev/null 2>&1") == 0; }

// CI (CI=true, as GitHub Actions and .ci/run set it) has gzip and runs `make data` before
// the tests, so there a missing tool or data file is a failure, not a reason to skip.
static bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

static void check_images(const Tensor& images, uint32_t N, uint32_t H, uint32_t W) {
  REQUIRE(images.shape() == Shape{N, 1, H, W});
  std::vector<uint8_t> raw = idx_images(N, H, W);
  // Exactly x / 127.5 - 1, computed the same way in float: 0 -> -1, 255 -> 1.
  for (int64_t i = 0; i < images.numel(); i++) REQUIRE(images[i] == raw[16 + i] / 127.5f - 1.0f);
}

TEST_CASE("mnist: IDX images and labels read back exactly, plain and gzipped") {
  TempDir dir;
  std::vector<uint8_t> labels = {3, 0, 9, 1, 5};
  testing::write_bytes(dir / "train-images-idx3-ubyte", idx_images(5, 28, 28));
  testing::write_bytes(dir / "train-labels-idx1-ubyte", idx_labels(labels));
  MnistSplit train = load_mnist(dir.path, "train");
  check_images(train.images, 5, 28, 28);
  CHECK(train.labels == labels);
  Tensor odd = parse_idx_images(idx_images(2, 3, 5).data(), 16 + 30, "mem");
  check_images(odd, 2, 3, 5);
  CHECK(odd[0] == -1.0f);

  // Pixel 255 maps to exactly 1.
  std::vector<uint8_t> white = idx_images(1, 1, 1);
  white[16] = 255;
  CHECK(parse_idx_images(white.data(), white.size(), "mem")[0] == 1.0f);

  // t10k files, gzipped, and the '.' spelling of the labels file.
  if (!have_gzip()) {
    if (in_ci()) FAIL_CHECK("CI=true but gzip is not on PATH: the gzipped cases cannot run");
    else MESSAGE("gzip not found: skipping the gzipped cases");
    return;
  }
  testing::write_bytes(dir / "t10k-images-idx3-ubyte", idx_images(4, 28, 28));
  testing::write_bytes(dir / "t10k-labels.idx1-ubyte", idx_labels({7, 7, 2, 0}));
  REQUIRE(std::system(("gzip -q " + (dir / "t10k-images-idx3-ubyte") + " " + (dir / "t10k-labels.idx1-ubyte")).c_str()) ==
          0);
  MnistSplit test = load_mnist(dir.path, "test");
  check_images(test.images, 4, 28, 28);
  CHECK(test.labels == std::vector<uint8_t>{7, 7, 2, 0});

  // A corrupt .gz: gzip's own complaint is passed on.
  std::vector<uint8_t> gz = testing::read_bytes(dir / "t10k-images-idx3-ubyte.gz");
  gz.resize(gz.size() / 2);
  testing::write_bytes(dir / "cut.gz", gz);
  CHECK_THROWS_WITH_AS(read_idx_images(dir / "cut.gz"),
                       doctest::Contains(("'gzip -dc' failed on '" + (dir / "cut.gz") + "' (exit status 1: gzip:").c_str()),
                       Error);
  // The decompressed-size cap.
  CHECK_THROWS_WITH_AS(read_gzip_file(dir / "t10k-images-idx3-ubyte.gz", 1000), doctest::Contains("more than 1000 bytes"),
                       Error);
  // No gzip on PATH.
  std::string saved_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", (dir / "empty-bin").c_str(), 1);
  std::string msg;
  try {
    read_idx_images(dir / "t10k-images-idx3-ubyte.gz");
  } catch (const Error& e) {
    msg = e.what();
  }
  setenv("PATH", saved_path.c_str(), 1);
  CHECK(msg.find("cannot run 'gzip'") != std::string::npos);
  CHECK(msg.find("install gzip") != std::string::npos);
}

TEST_CASE("mnist: bad IDX files are refused before anything is allocated") {
  std::vector<uint8_t> good = idx_images(2, 4, 4);
  CHECK(images_error(good) == "");

  std::vector<uint8_t> bad_magic = good;
  bad_magic[0] = 0x12;
  CHECK(images_error(bad_magic).find("'x.idx' has bad magic 0x12000803, expected 0x00000803") != std::string::npos);
  std::vector<uint8_t> float_type = good;
  float_type[2] = 0x0D;
  CHECK(images_error(float_type).find("bad magic 0x00000D03") != std::string::npos);
  std::vector<uint8_t> gzipped = good;
  gzipped[0] = 0x1F, gzipped[1] = 0x8B;
  CHECK(images_error(gzipped).find("is gzip-compressed") != std::string::npos);
  CHECK(images_error(idx_labels({1, 2})).find("is an IDX labels file (magic 0x00000801)") != std::string::npos);
  CHECK(labels_error(good).find("is an IDX images file (magic 0x00000803)") != std::string::npos);

  // Wrong dimension count: 0x00000802.
  std::vector<uint8_t> two_dims = good;
  two_dims[3] = 2;
  CHECK(images_error(two_dims).find("has 2 dimensions (magic 0x00000802), expected 3") != std::string::npos);

  // Truncated anywhere: in the magic, in the header, in the pixels.
  CHECK(images_error({0, 0}).find("too short for the IDX magic: truncated at byte 2") != std::string::npos);
  CHECK(images_error(std::vector<uint8_t>(good.begin(), good.begin() + 10))
            .find("truncated at byte 10, inside the 16-byte header") != std::string::npos);
  CHECK(images_error(std::vector<uint8_t>(good.begin(), good.end() - 1))
            .find("truncated at byte 47: its header announces 2 x 4 x 4 = 48 bytes") != std::string::npos);
  for (size_t len = 0; len < good.size(); len++)  // every prefix is refused
    CHECK(images_error(std::vector<uint8_t>(good.begin(), good.begin() + len)) != "");

  // A header announcing far more than the file holds: an error, not a huge allocation.
  std::vector<uint8_t> huge;
  put_be32(huge, 0x00000803), put_be32(huge, 0xFFFFFFFF), put_be32(huge, 0xFFFFFFFF), put_be32(huge, 0xFFFFFFFF);
  CHECK(images_error(huge).find("truncated at byte 16: its header announces 4294967295 x 4294967295 x 4294967295 = "
                                "more bytes") != std::string::npos);
  std::vector<uint8_t> trailing = good;
  trailing.push_back(0);
  CHECK(images_error(trailing).find("has 1 bytes after the 2 x 4 x 4") != std::string::npos);
  std::vector<uint8_t> zero_rows = idx_images(0, 0, 4);
  CHECK(images_error(zero_rows).find("images of 0 x 4 pixels") != std::string::npos);
  CHECK(labels_error(std::vector<uint8_t>(6)).find("bad magic") != std::string::npos);
  std::vector<uint8_t> short_labels = idx_labels({1, 2, 3});
  short_labels.pop_back();
  CHECK(labels_error(short_labels).find("truncated at byte 10: its header announces 3 = 11 bytes") != std::string::npos);
}

// --- sizes checked before anything is allocated (issue 14, section 2) -------------------
// Each reader runs in a child process under a memory limit (tests/memory_limit.h): a
// reader that allocated from a size it had not checked would end there in std::bad_alloc.

TEST_CASE("mnist: /dev/zero is refused before any read, as images and as labels (memory limit)") {
  check_clean_error(testing::run_with_memory_limit([] { read_idx_images("/dev/zero"); }),
                    "'/dev/zero' is a character device, not a regular file");
  check_clean_error(testing::run_with_memory_limit([] { read_idx_labels("/dev/zero"); }),
                    "'/dev/zero' is a character device, not a regular file");
}

TEST_CASE("mnist: a header announcing 10^9 images is refused before allocating: plain, sparse, gzipped "
          "(memory limit)") {
  TempDir dir;
  std::vector<uint8_t> header;
  put_be32(header, 0x00000803), put_be32(header, 1000000000), put_be32(header, 28), put_be32(header, 28);
  const uint64_t announced = 16 + uint64_t(1000000000) * 28 * 28;  // 784 GB
  // An 8 GB sparse file: less than announced.
  const std::string sparse = dir / "sparse-images-idx3-ubyte";
  testing::write_sparse(sparse, header, uint64_t(8) << 30);
  check_clean_error(testing::run_with_memory_limit([&] { read_idx_images(sparse); }),
                    "'" + sparse + "' is truncated at byte 8589934592: its header announces 1000000000 x 28 x 28 = " +
                        std::to_string(announced) + " bytes");
  // A 784 GB sparse file that holds exactly what the header announces: beyond the bound.
  const std::string exact = dir / "exact-images-idx3-ubyte";
  testing::write_sparse(exact, header, announced);
  check_clean_error(testing::run_with_memory_limit([&] { read_idx_images(exact); }),
                    "announces 1000000000 x 28 x 28 = 784000000000 bytes of data, more than the 1073741824 this "
                    "reader accepts");
  // Gzipped, the file's size says nothing: the bound alone refuses it.
  if (!have_gzip()) {
    MESSAGE("gzip not found: skipping the gzipped case");
    return;
  }
  const std::string gz = dir / "t10k-images-idx3-ubyte";
  testing::write_bytes(gz, header);
  REQUIRE(std::system(("gzip -q " + gz).c_str()) == 0);
  check_clean_error(testing::run_with_memory_limit([&] { read_idx_images(gz + ".gz"); }),
                    "announces 1000000000 x 28 x 28 = 784000000000 bytes of data, more than the 1073741824");
}

TEST_CASE("mnist: a gzip bomb is read only up to the size its header announces (memory limit)") {
  if (!have_gzip()) {
    MESSAGE("gzip not found: skipped");
    return;
  }
  // 1000 images of 28 x 28 (784016 bytes with the header), then 2 GiB of zeros: gzip
  // members concatenated (gzip -dc decompresses them one after the other), one 64 MiB
  // member of zeros 32 times, about 2 MB on disk.
  TempDir dir;
  std::vector<uint8_t> images = idx_images(1000, 28, 28);
  testing::write_bytes(dir / "head", images);
  REQUIRE(std::system(("gzip -q " + (dir / "head") + " && head -c 67108864 /dev/zero | gzip -1 > " + (dir / "zeros.gz"))
                          .c_str()) == 0);
  std::vector<uint8_t> bomb = testing::read_bytes(dir / "head.gz"), zeros = testing::read_bytes(dir / "zeros.gz");
  for (int k = 0; k < 32; k++) bomb.insert(bomb.end(), zeros.begin(), zeros.end());
  const std::string path = dir / "bomb-images-idx3-ubyte.gz";
  testing::write_bytes(path, bomb);
  check_clean_error(testing::run_with_memory_limit([&] { read_idx_images(path); }),
                    "'" + path + "' decompresses to more than the 784016 bytes its header announces (1000 x 28 x 28)");
  // The same file without the zeros reads back exactly.
  check_images(read_idx_images(dir / "head.gz"), 1000, 28, 28);
  // Output that ends early: truncated, at the decompressed byte where it ended.
  testing::write_bytes(dir / "short", std::vector<uint8_t>(images.begin(), images.end() - 5));
  REQUIRE(std::system(("gzip -q " + (dir / "short")).c_str()) == 0);
  CHECK_THROWS_WITH_AS(read_idx_images(dir / "short.gz"),
                       doctest::Contains("is truncated at byte 784011 (decompressed): its header announces 1000 x 28 x "
                                         "28 = 784016 bytes"),
                       Error);
}

TEST_CASE("mnist: images and labels must agree, and missing files are listed") {
  TempDir dir;
  testing::write_bytes(dir / "train-images-idx3-ubyte", idx_images(3, 28, 28));
  testing::write_bytes(dir / "train-labels-idx1-ubyte", idx_labels({1, 2}));
  CHECK_THROWS_WITH_AS(load_mnist(dir.path, "train"), doctest::Contains("has 3 images but"), Error);
  testing::write_bytes(dir / "train-labels-idx1-ubyte", idx_labels({1, 10, 2}));
  CHECK_THROWS_WITH_AS(load_mnist(dir.path, "train"), doctest::Contains("label 1 is 10, outside 0..9"), Error);
  const std::string missing = "no t10k images in '" + dir.path +
                              "': looked for t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz, "
                              "t10k-images.idx3-ubyte, t10k-images.idx3-ubyte.gz. Run `make data`";
  CHECK_THROWS_WITH_AS(load_mnist(dir.path, "test"), doctest::Contains(missing.c_str()), Error);
  CHECK_THROWS_WITH_AS(load_mnist(dir.path, "val"), doctest::Contains("split 'val' must be 'train' or 'test'"), Error);
  CHECK_THROWS_WITH_AS(read_idx_images(dir / "nope"), doctest::Contains("cannot open"), Error);
}

TEST_CASE("mnist: the real files, when present, have the published sizes") {
  // data/mnist comes from `make data` (required under CI=true); Fashion-MNIST from Debian's
  // dataset-fashion-mnist (optional everywhere). Only the 10000-image test splits, to stay fast.
  struct stat st;
  int checked = 0;
  if (::stat("data/mnist", &st) != 0 && in_ci())
    FAIL_CHECK("CI=true but data/mnist does not exist: CI runs `make data` before the tests (run them from the "
               "repository root)");
  for (const std::string& dir : {std::string("data/mnist"), std::string(kFashionMnistDir)}) {
    if (::stat(dir.c_str(), &st) != 0) continue;
    MnistSplit test = load_mnist(dir, "test");
    CHECK(test.images.shape() == Shape{10000, 1, 28, 28});
    REQUIRE(test.labels.size() == 10000);
    int per_class[10] = {0};
    for (uint8_t l : test.labels) per_class[l]++;
    for (int c = 0; c < 10; c++) CHECK(per_class[c] >= 800);  // roughly balanced: 892..1135 in MNIST, 1000 in Fashion
    float lo = 1, hi = -1;
    for (int64_t i = 0; i < test.images.numel(); i++) lo = std::min(lo, test.images[i]), hi = std::max(hi, test.images[i]);
    CHECK(lo == -1.0f);
    CHECK(hi == 1.0f);
    checked++;
  }
  // (a const char* constant streams into doctest as a pointer: wrapped in std::string)
  if (checked == 0) MESSAGE("neither data/mnist nor " << std::string(kFashionMnistDir) << " exists: skipped");
}

// The CIFAR-10 binary reader on synthetic batch files in the exact format (no CIFAR-10
// on the machine is needed): labels and pixels of known records, the channel-planar
// order, the train and test splits, and every kind of bad file.
#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/cifar10.h"
#include "tests/data/synthetic.h"
#include "tests/testing.h"
#include "tests/memory_limit.h"
#include "tests/temp_dir.h"

using namespace ddpm;
using testing::TempDir;
using testing::check_clean_error;
using testing::cifar_pixel;
using testing::cifar_records;

namespace {

float unit(uint8_t v) { return v / 127.5f - 1.0f; }

// images[n] against cifar_pixel(first + n, ...), everywhere.
void check_pattern(const Dataset& d, int64_t first) {
  REQUIRE(d.images.dim() == 4);
  REQUIRE(d.images.size(1) == 3);
  REQUIRE(d.images.size(2) == 32);
  REQUIRE(d.images.size(3) == 32);
  int64_t mismatches = 0;
  for (int64_t n = 0; n < d.size(); n++)
    for (int64_t c = 0; c < 3; c++)
      for (int64_t h = 0; h < 32; h++)
        for (int64_t w = 0; w < 32; w++)
          if (d.images[((n * 3 + c) * 32 + h) * 32 + w] != unit(cifar_pixel(first + n, c, h, w))) mismatches++;
  CHECK(mismatches == 0);
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  return testing::error_of([&] { parse_cifar10(bytes.data(), bytes.size(), "batch.bin"); });
}

}  // namespace

TEST_CASE("cifar10: known records' labels and pixels, channel-planar, in [-1, 1]") {
  TempDir dir;
  std::vector<uint8_t> bytes = cifar_records({6, 9, 0, 3});
  // Record 2 by hand: R plane all 255, G plane a ramp along w, B plane 0 but one pixel,
  // so a reader that interleaves channels or swaps rows and columns gets it wrong.
  uint8_t* r2 = &bytes[2 * 3073];
  std::memset(r2 + 1, 255, 1024);
  for (int i = 0; i < 1024; i++) r2[1 + 1024 + i] = static_cast<uint8_t>(i % 32 * 8);
  std::memset(r2 + 1 + 2048, 0, 1024);
  r2[1 + 2048 + 5 * 32 + 7] = 77;  // B at row 5, column 7
  testing::write_bytes(dir / "data_batch_1.bin", bytes);

  const Dataset d = read_cifar10_file(dir / "data_batch_1.bin");
  REQUIRE(d.images.shape() == Shape{4, 3, 32, 32});
  CHECK(d.labels == std::vector<uint8_t>{6, 9, 0, 3});
  CHECK(d.num_classes == 10);
  auto at = [&](int64_t n, int64_t c, int64_t h, int64_t w) { return d.images[((n * 3 + c) * 32 + h) * 32 + w]; };
  // Records 0, 1 and 3 follow the pattern; byte 1 + c * 1024 + h * 32 + w of a record is
  // channel c, row h, column w.
  for (int64_t n : {0, 1, 3})
    for (int64_t c = 0; c < 3; c++)
      for (int64_t h : {0, 5, 31})
        for (int64_t w : {0, 7, 31}) {
          CAPTURE(n);
          CAPTURE(c);
          CAPTURE(h);
          CAPTURE(w);
          CHECK(at(n, c, h, w) == unit(bytes[size_t(n * 3073 + 1 + c * 1024 + h * 32 + w)]));
          CHECK(at(n, c, h, w) == unit(cifar_pixel(n, c, h, w)));
        }
  CHECK(at(2, 0, 0, 0) == 1.0f);   // R = 255 -> 1 exactly
  CHECK(at(2, 0, 31, 31) == 1.0f);
  CHECK(at(2, 1, 3, 0) == -1.0f);  // G = 0 at column 0 -> -1 exactly
  CHECK(at(2, 1, 3, 10) == unit(80));
  CHECK(at(2, 1, 31, 31) == unit(248));
  CHECK(at(2, 2, 5, 7) == unit(77));
  CHECK(at(2, 2, 7, 5) == -1.0f);

  // The in-memory reader agrees value for value.
  const Dataset m = parse_cifar10(bytes.data(), bytes.size(), "mem");
  CHECK(m.labels == d.labels);
  CHECK(std::memcmp(m.images.data(), d.images.data(), sizeof(float) * size_t(d.images.numel())) == 0);
}

TEST_CASE("cifar10: the train split is data_batch_1..5 in order, the test split test_batch") {
  TempDir dir;
  // Records are numbered across the five files (1, 2, 3, 1 and 2 records), labels n % 10.
  int64_t first = 0;
  std::vector<uint8_t> all_labels;
  for (int k = 1; k <= 5; k++) {
    const int64_t n = k == 3 ? 3 : k % 3 == 2 ? 2 : 1;
    std::vector<uint8_t> labels;
    for (int64_t i = 0; i < n; i++) labels.push_back(static_cast<uint8_t>((first + i) % 10));
    testing::write_bytes(dir / ("data_batch_" + std::to_string(k) + ".bin"), cifar_records(labels, first));
    all_labels.insert(all_labels.end(), labels.begin(), labels.end());
    first += n;
  }
  const Dataset train = load_cifar10(dir.path, "train");
  CHECK(train.size() == first);
  CHECK(train.labels == all_labels);
  check_pattern(train, 0);

  testing::write_bytes(dir / "test_batch.bin", cifar_records({4, 2}, 100));
  const Dataset test = load_cifar10(dir.path, "test");
  CHECK(test.labels == std::vector<uint8_t>{4, 2});
  check_pattern(test, 100);

  // The folder the archive unpacks to is found too.
  TempDir top;
  REQUIRE(mkdir((top / "cifar-10-batches-bin").c_str(), 0755) == 0);
  testing::write_bytes(top / "cifar-10-batches-bin/test_batch.bin", cifar_records({7}));
  CHECK(load_cifar10(top.path, "test").labels == std::vector<uint8_t>{7});
  // Missing files are listed, with where to get them.
  std::remove((dir / "data_batch_2.bin").c_str());
  std::remove((dir / "data_batch_4.bin").c_str());
  CHECK_THROWS_WITH_AS(load_cifar10(dir.path, "train"),
                       doctest::Contains("no data_batch_2.bin, data_batch_4.bin in '"), Error);
  CHECK_THROWS_WITH_AS(load_cifar10(dir.path, "train"), doctest::Contains("cifar-10-binary.tar.gz"), Error);
  CHECK_THROWS_WITH_AS(load_cifar10(dir.path, "valid"), doctest::Contains("split 'valid' must be"), Error);
}

TEST_CASE("cifar10: sizes that are not whole records, empty files and labels above 9 name the file and record") {
  const std::vector<uint8_t> good = cifar_records({1, 2, 3});
  CHECK(parse_error(good) == "");
  std::vector<uint8_t> cut(good.begin(), good.end() - 3069);  // 2 records and 4 bytes
  CHECK(parse_error(cut).find("'batch.bin' is 6150 bytes, not a whole number of 3073-byte records") !=
        std::string::npos);
  CHECK(parse_error(cut).find("record 2 is truncated at byte 6150, after 4 of its 3073 bytes") != std::string::npos);
  std::vector<uint8_t> one_short(good.begin(), good.end() - 1);
  CHECK(parse_error(one_short).find("record 2 is truncated at byte 9218, after 3072 of its 3073 bytes") !=
        std::string::npos);
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  CHECK(parse_error(longer).find("record 3 is truncated at byte 9220, after 1 of its 3073 bytes") != std::string::npos);
  CHECK(parse_error({}).find("'batch.bin' is empty") != std::string::npos);
  std::vector<uint8_t> bad_label = good;
  bad_label[3073] = 10;
  CHECK(parse_error(bad_label).find("'batch.bin' record 1 (at byte 3073) has label 10, outside 0..9") !=
        std::string::npos);
  bad_label[3073] = 1, bad_label[2 * 3073] = 255;
  CHECK(parse_error(bad_label).find("record 2 (at byte 6146) has label 255") != std::string::npos);

  // The file reader, label errors past its first piece of 1024 records included.
  TempDir dir;
  std::vector<uint8_t> labels(1500, 3);
  std::vector<uint8_t> big = cifar_records(labels);
  big[1300 * 3073] = 12;
  testing::write_bytes(dir / "big.bin", big);
  CHECK_THROWS_WITH_AS(read_cifar10_file(dir / "big.bin"),
                       doctest::Contains(("'" + (dir / "big.bin") + "' record 1300 (at byte 3994900) has label 12").c_str()),
                       Error);
  testing::write_bytes(dir / "cut.bin", cut);
  CHECK_THROWS_WITH_AS(read_cifar10_file(dir / "cut.bin"), doctest::Contains("record 2 is truncated at byte 6150"), Error);
}

TEST_CASE("cifar10: /dev/zero, a pipe, a folder and an 8 GB sparse file are refused before allocating") {
  TempDir dir;
  check_clean_error(testing::run_with_memory_limit([] { read_cifar10_file("/dev/zero"); }), "is a character device");
  REQUIRE(mkfifo((dir / "fifo").c_str(), 0600) == 0);
  check_clean_error(testing::run_with_memory_limit([&] { read_cifar10_file(dir / "fifo"); }), "is a pipe");
  check_clean_error(testing::run_with_memory_limit([&] { read_cifar10_file(dir.path); }), "is a directory");
  // 8 GiB = 2795291 whole records and 1 byte over; and one of exactly 2795000 records.
  testing::write_sparse(dir / "sparse.bin", cifar_records({1}), uint64_t(8) << 30);
  check_clean_error(testing::run_with_memory_limit([&] { read_cifar10_file(dir / "sparse.bin"); }),
                    "is 8589934592 bytes, more than the 1073741824 this reader accepts");
  testing::write_sparse(dir / "test_batch.bin", cifar_records({1}), uint64_t(2795000) * 3073);
  check_clean_error(testing::run_with_memory_limit([&] { load_cifar10(dir.path, "test"); }),
                    "more than the 1073741824 this reader accepts");
  // Within the bound (325000 records, 999 MB) but 4 GB as floats: more than the memory
  // limit allows, a clean error naming the file. (Not under ASan, which has no limit
  // here and would read it all.)
  if (testing::kMemoryLimitApplies) {
    testing::write_sparse(dir / "test_batch.bin", cifar_records({1}), uint64_t(325000) * 3073);
    check_clean_error(testing::run_with_memory_limit([&] { load_cifar10(dir.path, "test"); }),
                      "cifar10: 325000 images of the test split in '" + dir.path + "' do not fit in memory");
  }
}

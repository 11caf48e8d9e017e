// load_dataset by name: the four datasets, their options, and the shared pixel scaling.
#include <sys/stat.h>

#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/dataset.h"
#include "tests/data/synthetic.h"
#include "tests/temp_dir.h"

using namespace ddpm;
using testing::TempDir;

TEST_CASE("dataset: check_dataset_name knows mnist, fashion, cifar10 and folder") {
  for (const char* name : {"mnist", "fashion", "cifar10", "folder"}) CHECK_NOTHROW(check_dataset_name(name));
  CHECK_THROWS_WITH_AS(check_dataset_name("cifar100"),
                       doctest::Contains("unknown --dataset 'cifar100': use mnist, fashion, cifar10 or folder"), Error);
}

TEST_CASE("dataset: bytes_to_unit_range maps 0 -> -1 and 255 -> 1 exactly, x / 127.5 - 1 between") {
  std::vector<uint8_t> bytes(256);
  for (int i = 0; i < 256; i++) bytes[size_t(i)] = static_cast<uint8_t>(i);
  std::vector<float> out(256);
  bytes_to_unit_range(out.data(), bytes.data(), 256);
  CHECK(out[0] == -1.0f);
  CHECK(out[255] == 1.0f);
  for (int i = 0; i < 256; i++) CHECK(out[size_t(i)] == i / 127.5f - 1.0f);
}

TEST_CASE("dataset: load_dataset reads cifar10 and folder; sizes apply to folders only") {
  TempDir cifar;
  for (int k = 1; k <= 5; k++)
    testing::write_bytes(cifar / ("data_batch_" + std::to_string(k) + ".bin"), testing::cifar_records({uint8_t(k)}));
  const Dataset c = load_dataset("cifar10", cifar.path);
  CHECK(c.images.shape() == Shape{5, 3, 32, 32});
  CHECK(c.labels == std::vector<uint8_t>{1, 2, 3, 4, 5});
  CHECK(c.num_classes == 10);
  CHECK(load_dataset("cifar10", cifar.path, {32, 3}).size() == 5);  // its own size and channels: fine
  // the test split is test_batch.bin
  CHECK_THROWS_WITH_AS(load_dataset("cifar10", cifar.path, {}, "test"), doctest::Contains("test_batch.bin"), Error);
  testing::write_bytes(cifar / "test_batch.bin", testing::cifar_records({7, 8}));
  CHECK(load_dataset("cifar10", cifar.path, {}, "test").labels == std::vector<uint8_t>{7, 8});
  CHECK_THROWS_WITH_AS(load_dataset("cifar10", cifar.path, {}, "valid"), doctest::Contains("use train or test"), Error);
  CHECK_THROWS_WITH_AS(load_dataset("cifar10", cifar.path, {28, 0}),
                       doctest::Contains("--dataset cifar10 has 32x32 images; an image size of 28 applies to --dataset "
                                         "folder only"),
                       Error);
  CHECK_THROWS_WITH_AS(load_dataset("cifar10", cifar.path, {0, 1}),
                       doctest::Contains("--dataset cifar10 has 3-channel images; 1 channels apply"), Error);
  CHECK_THROWS_WITH_AS(load_dataset("mnist", cifar.path, {32, 0}), doctest::Contains("--dataset mnist has 28x28"),
                       Error);

  TempDir folder;
  REQUIRE(mkdir((folder / "a").c_str(), 0755) == 0);
  REQUIRE(mkdir((folder / "b").c_str(), 0755) == 0);
  const std::string pgm = "P5 3 3 255\n012345678";
  testing::write_bytes(folder / "a/x.pgm", std::vector<uint8_t>(pgm.begin(), pgm.end()));
  testing::write_bytes(folder / "b/y.pgm", std::vector<uint8_t>(pgm.begin(), pgm.end()));
  const Dataset f = load_dataset("folder", folder.path, {8, 3});
  CHECK(f.images.shape() == Shape{2, 3, 8, 8});
  CHECK(f.labels == std::vector<uint8_t>{0, 1});
  CHECK(f.num_classes == 2);
  CHECK(load_dataset("folder", folder.path, {8, 3}, "test").images.shape() == Shape{2, 3, 8, 8});  // one split
  CHECK_THROWS_WITH_AS(load_dataset("folder", ""), doctest::Contains("--dataset folder needs the folder of images"),
                       Error);
  CHECK_THROWS_WITH_AS(load_dataset("folder", folder.path), doctest::Contains("image size 0 is outside 1..1024"), Error);
  CHECK_THROWS_WITH_AS(load_dataset("cifar10", folder.path), doctest::Contains("no data_batch_1.bin"), Error);
}

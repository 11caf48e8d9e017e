// The folder dataset: which files it takes and how it labels them, the exact crop,
// area resize, channel and alpha rules of image_to_tensor, mixed channel counts, and
// bad folders and files refused with an error naming them.
#include <sys/stat.h>

#include <cmath>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/image_folder.h"
#include "ddpm/io/png.h"
#include "tests/memory_limit.h"
#include "tests/temp_dir.h"

using namespace ddpm;
using testing::TempDir;
using testing::check_clean_error;

namespace {

Image image(int64_t w, int64_t h, int channels, const std::vector<uint8_t>& pixels) {
  Image img;
  img.width = w, img.height = h, img.channels = channels, img.pixels = pixels;
  return img;
}

std::vector<float> to_tensor(const Image& img, int64_t size, int channels) {
  std::vector<float> out(size_t(size * size * channels));
  image_to_tensor(img, size, channels, out.data(), "img");
  return out;
}

// v in 0..255 (a double: an average) to [-1, 1] as image_to_tensor does it.
float unit(double v) { return static_cast<float>(v) / 127.5f - 1.0f; }

void check_values(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); i++) {
    CAPTURE(i);
    // Tolerance: want is the exact mean; the code sums weighted terms in double, so at
    // most a few double ulps apart before the one rounding to float.
    CHECK(std::fabs(got[i] - unit(want[i])) <= 1e-6f);
  }
}

std::vector<uint8_t> pgm(int w, int h, uint8_t value) {
  std::string head = "P5 " + std::to_string(w) + " " + std::to_string(h) + " 255\n";
  std::vector<uint8_t> out(head.begin(), head.end());
  out.insert(out.end(), size_t(w * h), value);
  return out;
}

std::vector<uint8_t> ppm(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  std::string head = "P6 " + std::to_string(w) + " " + std::to_string(h) + " 255\n";
  std::vector<uint8_t> out(head.begin(), head.end());
  for (int i = 0; i < w * h; i++) out.insert(out.end(), {r, g, b});
  return out;
}

void mkdir_p(const std::string& path) { REQUIRE(mkdir(path.c_str(), 0755) == 0); }

}  // namespace

TEST_CASE("image_folder: area resize: identity, block means, fractional overlaps, upsampling") {
  // No resize: exactly x / 127.5 - 1, as the other readers.
  const std::vector<uint8_t> ramp = {0, 1, 127, 128, 200, 254, 255, 3, 9};
  const std::vector<float> same = to_tensor(image(3, 3, 1, ramp), 3, 1);
  for (size_t i = 0; i < ramp.size(); i++) CHECK(same[i] == ramp[i] / 127.5f - 1.0f);
  // 4 x 4 -> 2 x 2: the mean of each 2 x 2 block.
  const std::vector<uint8_t> four = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150};
  check_values(to_tensor(image(4, 4, 1, four), 2, 1),
               {(0 + 10 + 40 + 50) / 4.0, (20 + 30 + 60 + 70) / 4.0, (80 + 90 + 120 + 130) / 4.0,
                (100 + 110 + 140 + 150) / 4.0});
  // 3 -> 2 along each axis: output 0 covers source [0, 1.5): pixel 0 whole, pixel 1 half.
  // Separable, so with rows a and b: out = (row weights) x (column weights).
  const std::vector<uint8_t> nine = {0, 30, 60, 90, 120, 150, 180, 210, 240};
  auto px = [&](int x, int y) { return double(nine[size_t(y * 3 + x)]); };
  const double w[2][3] = {{1 / 1.5, 0.5 / 1.5, 0}, {0, 0.5 / 1.5, 1 / 1.5}};
  std::vector<double> want;
  for (int o = 0; o < 2; o++)
    for (int i = 0; i < 2; i++) {
      double v = 0;
      for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) v += w[o][y] * w[i][x] * px(x, y);
      want.push_back(v);
    }
  check_values(to_tensor(image(3, 3, 1, nine), 2, 1), want);
  // 2 -> 4: each source pixel covers two outputs exactly (replication).
  check_values(to_tensor(image(2, 2, 1, {10, 20, 30, 40}), 4, 1),
               {10, 10, 20, 20, 10, 10, 20, 20, 30, 30, 40, 40, 30, 30, 40, 40});
  // 2 -> 3: outputs 0 and 2 lie inside one source pixel, output 1 straddles both.
  check_values(to_tensor(image(2, 2, 1, {0, 90, 0, 90}), 3, 1), {0, 45, 90, 0, 45, 90, 0, 45, 90});
}

TEST_CASE("image_folder: center crop to a square; the odd pixel goes right or down") {
  // 6 x 2: columns 2 and 3 are the square. 5 x 2: (5 - 2) / 2 = 1, so columns 1 and 2.
  check_values(to_tensor(image(6, 2, 1, {1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16}), 2, 1), {3, 4, 13, 14});
  check_values(to_tensor(image(5, 2, 1, {1, 2, 3, 4, 5, 11, 12, 13, 14, 15}), 2, 1), {2, 3, 12, 13});
  // 1 x 4 (tall): rows 1 (the odd leftover goes down: (4 - 1) / 2 = 1).
  check_values(to_tensor(image(1, 4, 1, {7, 8, 9, 10}), 1, 1), {8});
}

TEST_CASE("image_folder: channels: BT.601 luma, gray replicated, alpha composited on black") {
  // RGB -> 1: 0.299 R + 0.587 G + 0.114 B.
  check_values(to_tensor(image(1, 1, 3, {100, 50, 200}), 1, 1), {0.299 * 100 + 0.587 * 50 + 0.114 * 200});
  // RGB -> 3: planar, [C][H][W].
  check_values(to_tensor(image(1, 1, 3, {1, 2, 3}), 1, 3), {1, 2, 3});
  check_values(to_tensor(image(2, 2, 3, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}), 2, 3),
               {1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12});
  // Gray -> 3: the same value in each channel.
  check_values(to_tensor(image(1, 1, 1, {90}), 1, 3), {90, 90, 90});
  // Alpha: value * alpha / 255, before the channel conversion.
  check_values(to_tensor(image(1, 1, 4, {200, 100, 50, 128}), 1, 3),
               {200 * 128 / 255.0, 100 * 128 / 255.0, 50 * 128 / 255.0});
  check_values(to_tensor(image(1, 1, 4, {200, 100, 50, 51}), 1, 1),
               {(0.299 * 200 + 0.587 * 100 + 0.114 * 50) * 51 / 255.0});
  check_values(to_tensor(image(1, 1, 2, {255, 0}), 1, 1), {0});  // transparent -> black
  check_values(to_tensor(image(1, 1, 2, {255, 255}), 1, 1), {255});
  check_values(to_tensor(image(1, 1, 2, {100, 255}), 1, 3), {100, 100, 100});
  CHECK(color_channels(image(1, 1, 1, {0})) == 1);
  CHECK(color_channels(image(1, 1, 2, {0, 0})) == 1);
  CHECK(color_channels(image(1, 1, 3, {0, 0, 0})) == 3);
  CHECK(color_channels(image(1, 1, 4, {0, 0, 0, 0})) == 3);
  // Bad arguments.
  std::vector<float> out(16);
  CHECK_THROWS_WITH_AS(image_to_tensor(image(1, 1, 1, {0}), 0, 1, out.data(), "x"),
                       doctest::Contains("image size 0 is outside 1..1024"), Error);
  CHECK_THROWS_WITH_AS(image_to_tensor(image(1, 1, 1, {0}), 1, 2, out.data(), "x"),
                       doctest::Contains("2 channels asked for; use 1 or 3"), Error);
  CHECK_THROWS_WITH_AS(image_to_tensor(image(2, 2, 1, {0}), 1, 1, out.data(), "x"),
                       doctest::Contains("'x' is 2 x 2 x 1 with 1 bytes of pixels"), Error);
}

TEST_CASE("image_folder: a flat folder, sorted by name, label 0; class sub-folders labelled in sorted order") {
  TempDir flat;
  testing::write_bytes(flat / "b.pgm", pgm(2, 2, 20));
  testing::write_bytes(flat / "a.PNG", pgm(2, 2, 10));  // the bytes decide the format; the case of .png does not matter
  testing::write_bytes(flat / "c.ppm", ppm(2, 2, 30, 30, 30));
  testing::write_bytes(flat / ".hidden.png", pgm(2, 2, 99));
  testing::write_bytes(flat / "notes.txt", {'h', 'i'});
  mkdir_p(flat / "empty-sub");  // no images below: ignored beside top-level images
  ImageFolderListing flat_list = list_image_folder(flat.path);
  CHECK(flat_list.paths == std::vector<std::string>{flat / "a.PNG", flat / "b.pgm", flat / "c.ppm"});
  CHECK(flat_list.labels == std::vector<uint8_t>{0, 0, 0});
  CHECK(flat_list.classes.empty());

  TempDir classes;
  for (const char* c : {"dog", "cat", "zebra"}) mkdir_p(classes / c);
  testing::write_bytes(classes / "dog/2.pgm", pgm(2, 2, 1));
  testing::write_bytes(classes / "dog/1.pgm", pgm(2, 2, 1));
  testing::write_bytes(classes / "cat/x.pgm", pgm(2, 2, 1));
  testing::write_bytes(classes / "zebra/a.pgm", pgm(2, 2, 1));
  testing::write_bytes(classes / "zebra/readme.md", {'#'});
  mkdir_p(classes / ".git");
  ImageFolderListing list = list_image_folder(classes.path);
  CHECK(list.classes == std::vector<std::string>{"cat", "dog", "zebra"});
  CHECK(list.paths == std::vector<std::string>{classes / "cat/x.pgm", classes / "dog/1.pgm", classes / "dog/2.pgm",
                                               classes / "zebra/a.pgm"});
  CHECK(list.labels == std::vector<uint8_t>{0, 1, 1, 2});
  const Dataset d = load_image_folder(classes.path, 4, 0);
  CHECK(d.images.shape() == Shape{4, 1, 4, 4});
  CHECK(d.labels == list.labels);
  CHECK(d.num_classes == 3);
}

TEST_CASE("image_folder: bad folders are refused, naming them") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(list_image_folder(dir / "nope"), doctest::Contains("does not exist"), Error);
  testing::write_bytes(dir / "file", {1});
  CHECK_THROWS_WITH_AS(list_image_folder(dir / "file"), doctest::Contains("is not a folder"), Error);
  mkdir_p(dir / "empty");
  CHECK_THROWS_WITH_AS(list_image_folder(dir / "empty"),
                       doctest::Contains("holds no images (*.png, *.pgm, *.ppm) and no class sub-folders"), Error);
  mkdir_p(dir / "mixed");
  mkdir_p(dir / "mixed/cls");
  testing::write_bytes(dir / "mixed/top.pgm", pgm(1, 1, 0));
  testing::write_bytes(dir / "mixed/cls/in.pgm", pgm(1, 1, 0));
  CHECK_THROWS_WITH_AS(list_image_folder(dir / "mixed"),
                       doctest::Contains("holds images itself (top.pgm, ...) and class sub-folders with images "
                                         "('cls/in.pgm')"),
                       Error);
  mkdir_p(dir / "classes");
  mkdir_p(dir / "classes/a");
  mkdir_p(dir / "classes/b");
  testing::write_bytes(dir / "classes/a/1.pgm", pgm(1, 1, 0));
  testing::write_bytes(dir / "classes/b/notes.txt", {'x'});
  CHECK_THROWS_WITH_AS(list_image_folder(dir / "classes"),
                       doctest::Contains(("the class folder '" + (dir / "classes/b") + "' holds no images").c_str()),
                       Error);
  mkdir_p(dir / "many");
  for (int k = 0; k < 256; k++) mkdir_p(dir / ("many/" + std::to_string(k)));
  CHECK_THROWS_WITH_AS(list_image_folder(dir / "many"), doctest::Contains("has 256 sub-folders, each a class; at most 255"),
                       Error);
  // Bad arguments, and a bad image: its own reader's error, naming it.
  CHECK_THROWS_WITH_AS(load_image_folder(dir / "classes", 0, 1), doctest::Contains("image size 0 is outside 1..1024"),
                       Error);
  CHECK_THROWS_WITH_AS(load_image_folder(dir / "classes", 8, 2), doctest::Contains("2 channels asked for"), Error);
  mkdir_p(dir / "broken");
  testing::write_bytes(dir / "broken/a.pgm", pgm(1, 1, 0));
  testing::write_bytes(dir / "broken/b.png", {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0});
  CHECK_THROWS_WITH_AS(load_image_folder(dir / "broken", 8, 1),
                       doctest::Contains(("png: '" + (dir / "broken/b.png") + "' is truncated").c_str()), Error);
}

TEST_CASE("image_folder: mixed channel counts: refused unless a channel count is asked for, then converted") {
  TempDir dir;
  testing::write_bytes(dir / "a.pgm", pgm(4, 4, 60));
  testing::write_bytes(dir / "b.ppm", ppm(4, 2, 200, 100, 0));
  const std::vector<uint8_t> rgba = {10, 20, 30, 255, 10, 20, 30, 0};
  write_png(dir / "c.png", 2, 1, 4, rgba.data());
  CHECK_THROWS_WITH_AS(load_image_folder(dir.path, 2, 0),
                       doctest::Contains(("'" + (dir / "b.ppm") + "' is color (3 channels) but '" + (dir / "a.pgm") +
                                          "' is gray (1 channel): the images of one folder must agree unless a channel "
                                          "count is asked for")
                                             .c_str()),
                       Error);
  const Dataset gray = load_image_folder(dir.path, 2, 1);
  REQUIRE(gray.images.shape() == Shape{3, 1, 2, 2});
  CHECK(gray.num_classes == 1);
  CHECK(gray.images[0] == unit(60));
  CHECK(std::fabs(gray.images[4] - unit(0.299 * 200 + 0.587 * 100)) <= 1e-6f);  // 4 x 2 cropped to 2 x 2, same color
  // c.png: 2 x 1 cropped to its left pixel (1 x 1, opaque), resized up to 2 x 2.
  CHECK(std::fabs(gray.images[8] - unit(0.299 * 10 + 0.587 * 20 + 0.114 * 30)) <= 1e-6f);
  const Dataset rgb = load_image_folder(dir.path, 2, 3);
  REQUIRE(rgb.images.shape() == Shape{3, 3, 2, 2});
  for (int c = 0; c < 3; c++) CHECK(rgb.images[c * 4] == unit(60));  // gray replicated
  CHECK(rgb.images[12 + 0] == unit(200));                              // b.ppm: R, G, B planes
  CHECK(rgb.images[12 + 4] == unit(100));
  CHECK(rgb.images[12 + 8] == unit(0));
  // Same-kind folders need no channel count: gray PNG + PGM gives 1 channel.
  TempDir same;
  testing::write_bytes(same / "a.pgm", pgm(2, 2, 5));
  const std::vector<uint8_t> g = {1, 2, 3, 4};
  write_png(same / "b.png", 2, 2, 1, g.data());
  CHECK(load_image_folder(same.path, 2, 0).images.shape() == Shape{2, 1, 2, 2});
}

TEST_CASE("image_folder: the dataset's size is bounded before allocating; a hostile PNG is a clean error") {
  TempDir dir;
  // 400 images at 1024 x 1024 x 3 floats would be 5 GB.
  for (int i = 0; i < 400; i++) testing::write_bytes(dir / ("img" + std::to_string(1000 + i) + ".pgm"), pgm(1, 1, 7));
  check_clean_error(testing::run_with_memory_limit([&] { load_image_folder(dir.path, 1024, 3); }),
                    "has 400 images, 400 x 3 x 1024 x 1024 floats = 5033164800 bytes, more than the 4294967296");
  // A PNG whose IHDR announces 16384 x 16384 over a few bytes of data, in a folder.
  TempDir bomb;
  std::vector<uint8_t> png = encode_png(1, 1, 1, std::vector<uint8_t>{0}.data());
  png[16] = 0, png[17] = 0, png[18] = 0x40, png[19] = 0;  // width 16384
  png[20] = 0, png[21] = 0, png[22] = 0x40, png[23] = 0;  // height 16384
  const uint32_t crc = crc32(&png[12], 17);
  for (int k = 0; k < 4; k++) png[29 + size_t(k)] = static_cast<uint8_t>(crc >> (24 - 8 * k));
  testing::write_bytes(bomb / "a.png", png);
  check_clean_error(testing::run_with_memory_limit([&] { load_image_folder(bomb.path, 32, 1); }),
                    "header announces (deflate expands at most 1032 times)");
}

#include <cmath>
#include <cstring>
#include <limits>

#include "ddpm/core/check.h"
#include "ddpm/io/png.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;

// Plain bit-at-a-time CRC-32 and per-byte Adler-32, written from the definitions, as
// oracles for the library's table-driven and blocked versions.
static uint32_t crc32_bitwise(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}
static uint32_t adler32_bytewise(const uint8_t* p, size_t n) {
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < n; i++) a = (a + p[i]) % 65521, b = (b + a) % 65521;
  return (b << 16) | a;
}
static uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

struct Decoded {
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0, compression = 0, filter = 0, interlace = 0;
  std::vector<uint8_t> raw;  // inflated scanlines, filter bytes included
  std::vector<std::string> chunk_types;
  int stored_blocks = 0;
};

// A structural decoder: checks the signature, every chunk's length and CRC, and that
// the zlib stream holds only stored blocks with a valid LEN/NLEN and Adler-32.
static Decoded decode(const std::vector<uint8_t>& png) {
  Decoded d;
  const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  REQUIRE(png.size() >= 8);
  REQUIRE(std::memcmp(png.data(), signature, 8) == 0);
  std::vector<uint8_t> z;
  size_t pos = 8;
  while (pos < png.size()) {
    REQUIRE(png.size() - pos >= 12);
    uint32_t len = be32(&png[pos]);
    REQUIRE(png.size() - pos - 12 >= len);
    std::string type(png.begin() + pos + 4, png.begin() + pos + 8);
    const uint8_t* data = &png[pos + 8];
    CHECK_MESSAGE(be32(data + len) == crc32_bitwise(&png[pos + 4], 4 + len), "CRC of chunk " << type);
    d.chunk_types.push_back(type);
    if (type == "IHDR") {
      REQUIRE(len == 13);
      d.width = be32(data), d.height = be32(data + 4);
      d.bit_depth = data[8], d.color_type = data[9], d.compression = data[10], d.filter = data[11],
      d.interlace = data[12];
    } else if (type == "IDAT") {
      z.insert(z.end(), data, data + len);
    } else if (type == "IEND") {
      CHECK(len == 0);
    }
    pos += 12 + len;
  }
  CHECK(pos == png.size());
  // zlib: CMF, FLG with (CMF*256 + FLG) % 31 == 0 and no preset dictionary.
  REQUIRE(z.size() >= 6);
  CHECK((z[0] & 0x0F) == 8);  // deflate
  CHECK((z[0] * 256 + z[1]) % 31 == 0);
  CHECK((z[1] & 0x20) == 0);
  size_t p = 2;
  for (bool final_block = false; !final_block;) {
    REQUIRE(z.size() - p >= 5);
    final_block = z[p] & 1;
    CHECK((z[p] >> 1) == 0);  // BTYPE 00 (stored) and zero padding bits
    uint32_t len = z[p + 1] | z[p + 2] << 8, nlen = z[p + 3] | z[p + 4] << 8;
    CHECK(nlen == (~len & 0xFFFF));
    p += 5;
    REQUIRE(z.size() - p >= len);
    d.raw.insert(d.raw.end(), z.begin() + p, z.begin() + p + len);
    p += len;
    d.stored_blocks++;
  }
  REQUIRE(z.size() - p == 4);
  CHECK(be32(&z[p]) == adler32_bytewise(d.raw.data(), d.raw.size()));
  return d;
}

TEST_CASE("png: crc32 and adler32 match the standard check values and the plain definitions") {
  const uint8_t digits[] = "123456789";
  CHECK(crc32(digits, 9) == 0xCBF43926u);  // the catalogued CRC-32/ISO-HDLC check value
  const uint8_t wiki[] = "Wikipedia";
  CHECK(adler32(wiki, 9) == 0x11E60398u);  // RFC 1950's example, as on Wikipedia
  CHECK(crc32(digits, 0) == 0);
  CHECK(adler32(digits, 0) == 1);
  std::vector<uint8_t> big(20000);
  for (size_t i = 0; i < big.size(); i++) big[i] = static_cast<uint8_t>(255 - (i * 7919) % 256);  // many 0xFF: stresses s2
  CHECK(crc32(big.data(), big.size()) == crc32_bitwise(big.data(), big.size()));
  CHECK(adler32(big.data(), big.size()) == adler32_bytewise(big.data(), big.size()));
  CHECK(crc32(big.data() + 100, big.size() - 100, crc32(big.data(), 100)) == crc32(big.data(), big.size()));
  CHECK(adler32(big.data() + 100, big.size() - 100, adler32(big.data(), 100)) == adler32(big.data(), big.size()));
}

TEST_CASE("png: gray and RGB images decode to the exact pixels, across several stored blocks") {
  struct Case {
    int64_t width, height;
    int channels;
    int color_type;
  };
  // 300 x 300 gray is 90300 raw bytes: two stored blocks. 1 x 1 is the smallest image.
  for (Case c : {Case{300, 300, 1, 0}, Case{5, 3, 3, 2}, Case{1, 1, 1, 0}, Case{4, 2, 4, 6}}) {
    std::vector<uint8_t> pixels(static_cast<size_t>(c.width * c.height * c.channels));
    for (size_t i = 0; i < pixels.size(); i++) pixels[i] = static_cast<uint8_t>((i * 37 + i / 300) % 256);
    Decoded d = decode(encode_png(c.width, c.height, c.channels, pixels.data()));
    CHECK(d.chunk_types == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
    CHECK(d.width == c.width);
    CHECK(d.height == c.height);
    CHECK(d.bit_depth == 8);
    CHECK(d.color_type == c.color_type);
    CHECK(d.compression == 0);
    CHECK(d.filter == 0);
    CHECK(d.interlace == 0);
    const size_t row = static_cast<size_t>(1 + c.width * c.channels);
    REQUIRE(d.raw.size() == row * c.height);
    CHECK(d.stored_blocks == static_cast<int>((d.raw.size() + 65534) / 65535));
    for (int64_t y = 0; y < c.height; y++) {
      CHECK(d.raw[y * row] == 0);  // filter type None
      CHECK(std::memcmp(&d.raw[y * row + 1], &pixels[y * (row - 1)], row - 1) == 0);
    }
  }
  uint8_t px = 0;
  CHECK_THROWS_WITH_AS(encode_png(0, 1, 1, &px), doctest::Contains("both sides must be >= 1"), Error);
  CHECK_THROWS_WITH_AS(encode_png(1, 1, 2, &px), doctest::Contains("2 channels"), Error);
}

TEST_CASE("png: image grid maps [-1, 1] to bytes with rounding and lays images out as make_grid") {
  // to_pixel: v = (x + 1) / 2, pixel = floor(clamp(255 v + 0.5, 0, 255)), as save_image.
  CHECK(to_pixel(-1.0f) == 0);
  CHECK(to_pixel(1.0f) == 255);
  CHECK(to_pixel(0.0f) == 128);  // 127.5 rounds half up
  CHECK(to_pixel(-3.0f) == 0);   // clamped
  CHECK(to_pixel(7.0f) == 255);
  CHECK(to_pixel(std::numeric_limits<float>::quiet_NaN()) == 0);
  CHECK(to_pixel(2.0f / 255.0f - 1.0f) == 1);  // v = 1/255: 255 v + 0.5 = 1.5 -> 1
  CHECK(to_pixel(4.8f / 255.0f - 1.0f) == 2);  // 255 v = 2.4: 2.9 -> 2 (far from a rounding edge)

  // 3 images of 2 x 2, nrow 2, padding 1: 2 columns and 2 rows of (2 + 1) pixels, plus 1.
  Tensor images = Tensor::from({3, 1, 2, 2}, {-1, 1, 0, 0.5f, /**/ 1, 1, 1, 1, /**/ -0.5f, -1, -2, 2});
  Image img = image_grid(images, 2, 1);
  CHECK(img.width == 7);
  CHECK(img.height == 7);
  CHECK(img.channels == 1);
  // Every pixel: pad 0 unless it lies inside an image.
  for (int64_t y = 0; y < 7; y++)
    for (int64_t x = 0; x < 7; x++) {
      uint8_t want = 0;
      int64_t gy = (y - 1) / 3, gx = (x - 1) / 3, iy = (y - 1) % 3, ix = (x - 1) % 3;
      int64_t n = gy * 2 + gx;
      if (y >= 1 && x >= 1 && iy < 2 && ix < 2 && n < 3) {
        double v = images[((n * 2) + iy) * 2 + ix];
        want = static_cast<uint8_t>(std::floor(std::min(255.0, std::max(0.0, (v + 1) * 127.5 + 0.5))));
      }
      INFO("pixel (" << y << ", " << x << ")");
      CHECK(img.pixels[y * 7 + x] == want);
    }
  CHECK(img.pixels[1 * 7 + 1] == 0);    // image 0, (0, 0): -1
  CHECK(img.pixels[2 * 7 + 2] == 191);  // image 0, (1, 1): 0.5 -> 191.25 + 0.5
  CHECK(img.pixels[4 * 7 + 1] == 64);   // image 2, (0, 0): -0.5 -> 63.75 + 0.5

  // Through a file: the decoded pixels are the grid's.
  testing::TempDir dir;
  write_image_grid(dir / "grid.png", images, 2, 1);
  Decoded d = decode(testing::read_bytes(dir / "grid.png"));
  REQUIRE(d.raw.size() == 7 * 8);
  for (int64_t y = 0; y < 7; y++) CHECK(std::memcmp(&d.raw[y * 8 + 1], &img.pixels[y * 7], 7) == 0);
  CHECK(dir.list() == std::vector<std::string>{"grid.png"});

  // RGB: channels interleaved in the image.
  Tensor rgb = Tensor::from({1, 3, 1, 2}, {-1, 1, /*G*/ 1, -1, /*B*/ 0, 0});
  Image c = image_grid(rgb, 8, 0);
  CHECK(c.pixels == std::vector<uint8_t>{0, 255, 128, 255, 0, 128});

  CHECK_THROWS_WITH_AS(image_grid(Tensor({2, 2, 3, 3})), doctest::Contains("C = 1 or 3, got [2, 2, 3, 3]"), Error);
  CHECK_THROWS_WITH_AS(image_grid(Tensor({2, 1, 3, 3}), 0), doctest::Contains("nrow 0"), Error);
}

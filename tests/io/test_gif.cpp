// Tests of the GIF writer: the LZW code stream (exact codes for a small input, round
// trips through the decoder across code-width changes and table resets) and the file
// structure, parsed back block by block.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/gif.h"
#include "ddpm/core/rng.h"
#include "tests/testing.h"

using namespace ddpm;

namespace {

// Unpacks fixed-width codes, least significant bit first.
std::vector<int> unpack_codes(const std::vector<uint8_t>& bytes, int width, size_t count) {
  std::vector<int> codes;
  size_t bit = 0;
  for (size_t c = 0; c < count; c++) {
    int code = 0;
    for (int b = 0; b < width; b++, bit++) code |= ((bytes[bit / 8] >> (bit % 8)) & 1) << b;
    codes.push_back(code);
  }
  return codes;
}

uint16_t le16(const std::vector<uint8_t>& b, size_t at) { return static_cast<uint16_t>(b[at] | b[at + 1] << 8); }

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed, int levels) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<uint8_t>(uniform_double(RngKey{seed, 1}, i) * levels);
  return v;
}

}  // namespace

TEST_CASE("gif: LZW codes of a small input are the textbook sequence") {
  // 0 0 0 0 1: clear; emit 0 (add 258 = "0 0"); emit 258 (add 259 = "0 0 0"); emit 0
  // (add 260 = "0 1"); emit 1; end. All codes 9 bits wide.
  const std::vector<uint8_t> px = {0, 0, 0, 0, 1};
  std::vector<uint8_t> codes = gif_lzw_encode(px.data(), px.size());
  CHECK(codes.size() == (6 * 9 + 7) / 8);
  CHECK(unpack_codes(codes, 9, 6) == std::vector<int>{256, 0, 258, 0, 1, 257});
  CHECK(gif_lzw_decode(codes.data(), codes.size()) == px);
  // The empty input is a clear code and an end code.
  std::vector<uint8_t> empty = gif_lzw_encode(nullptr, 0);
  CHECK(unpack_codes(empty, 9, 2) == std::vector<int>{256, 257});
  CHECK(gif_lzw_decode(empty.data(), empty.size()).empty());
}

TEST_CASE("gif: LZW round trips across code widths 9 to 12 and table resets") {
  // Random bytes fill the 4096-entry table every ~3800 codes (many resets); few gray
  // levels give long matches; a constant run grows strings one byte at a time; the
  // lengths around 2^k probe the width change right before the end code.
  std::vector<std::vector<uint8_t>> inputs = {random_bytes(100000, 1, 256), random_bytes(60000, 2, 3),
                                              std::vector<uint8_t>(50000, 7), random_bytes(1, 3, 256)};
  for (size_t n : {253, 254, 255, 256, 257, 509, 510, 511, 512, 513, 1022, 1023, 1024, 3840, 3841, 3842})
    inputs.push_back(random_bytes(n, 4 + n, 256));
  for (size_t n = 1; n < 80; n++) inputs.push_back(std::vector<uint8_t>(n * (n + 1) / 2 + 40, 0));
  for (const auto& px : inputs) {
    std::vector<uint8_t> codes = gif_lzw_encode(px.data(), px.size());
    CHECK(gif_lzw_decode(codes.data(), codes.size()) == px);
  }
  // Compression happens: 50000 equal bytes need ~316 codes (strings of length 1, 2, 3, ...).
  CHECK(gif_lzw_encode(inputs[2].data(), inputs[2].size()).size() < 500);
  // A truncated stream is an error, not a crash.
  std::vector<uint8_t> codes = gif_lzw_encode(inputs[0].data(), 1000);
  CHECK_THROWS_WITH_AS(gif_lzw_decode(codes.data(), codes.size() / 2), doctest::Contains("without an end code"), Error);
}

TEST_CASE("gif: the file parses block by block and each frame decodes to its pixels") {
  const int64_t W = 40, H = 30;  // 1200 random pixels: more than one 255-byte sub-block
  std::vector<std::vector<uint8_t>> frames = {random_bytes(W * H, 11, 256), random_bytes(W * H, 12, 4),
                                              std::vector<uint8_t>(W * H, 200)};
  const std::vector<int> delays = {10, 20, 300};
  std::vector<uint8_t> gif = encode_gif(W, H, frames, delays, 0);
  REQUIRE(gif.size() > 13 + 768 + 19);
  CHECK(std::string(gif.begin(), gif.begin() + 6) == "GIF89a");
  CHECK(le16(gif, 6) == W);
  CHECK(le16(gif, 8) == H);
  CHECK(gif[10] == 0xF7);  // global color table, 256 entries
  for (int k = 0; k < 256; k++)
    for (int c = 0; c < 3; c++) REQUIRE(gif[13 + 3 * k + c] == k);  // gray palette
  size_t at = 13 + 768;
  // NETSCAPE2.0 loop extension
  CHECK(gif[at] == 0x21);
  CHECK(gif[at + 1] == 0xFF);
  CHECK(gif[at + 2] == 11);
  CHECK(std::string(gif.begin() + static_cast<long>(at) + 3, gif.begin() + static_cast<long>(at) + 14) == "NETSCAPE2.0");
  CHECK(gif[at + 14] == 3);
  CHECK(gif[at + 15] == 1);
  CHECK(le16(gif, at + 16) == 0);
  CHECK(gif[at + 18] == 0);
  at += 19;
  for (size_t f = 0; f < frames.size(); f++) {
    CAPTURE(f);
    // graphic control extension
    REQUIRE(gif[at] == 0x21);
    REQUIRE(gif[at + 1] == 0xF9);
    CHECK(gif[at + 2] == 4);
    CHECK(le16(gif, at + 4) == delays[f]);
    CHECK(gif[at + 7] == 0);
    at += 8;
    // image descriptor
    REQUIRE(gif[at] == 0x2C);
    CHECK(le16(gif, at + 1) == 0);
    CHECK(le16(gif, at + 3) == 0);
    CHECK(le16(gif, at + 5) == W);
    CHECK(le16(gif, at + 7) == H);
    CHECK(gif[at + 9] == 0);
    at += 10;
    CHECK(gif[at++] == 8);  // LZW minimum code size
    std::vector<uint8_t> codes;
    int blocks = 0;
    while (gif[at] != 0) {
      const size_t n = gif[at];
      REQUIRE(at + 1 + n < gif.size());
      codes.insert(codes.end(), gif.begin() + static_cast<long>(at) + 1, gif.begin() + static_cast<long>(at + 1 + n));
      at += 1 + n;
      blocks++;
    }
    at++;  // block terminator
    if (f == 0) CHECK(blocks > 1);
    CHECK(gif_lzw_decode(codes.data(), codes.size()) == frames[f]);
  }
  CHECK(at == gif.size() - 1);
  CHECK(gif.back() == 0x3B);  // trailer

  CHECK_THROWS_WITH_AS(encode_gif(W, H, frames, {10, 10}), doctest::Contains("one delay per frame"), Error);
  CHECK_THROWS_WITH_AS(encode_gif(W, H + 1, frames, delays), doctest::Contains("frame 0 has 1200 bytes"), Error);
  CHECK_THROWS_AS(encode_gif(70000, 1, {std::vector<uint8_t>(70000)}, {1}), Error);
}

TEST_CASE("gif: RGB frames map to the 6x6x6 cube, nearest level per channel") {
  CHECK(gif_cube_index(0, 0, 0) == 0);
  CHECK(gif_cube_index(255, 255, 255) == 215);
  CHECK(gif_cube_index(255, 0, 0) == 180);
  CHECK(gif_cube_index(0, 255, 0) == 30);
  CHECK(gif_cube_index(0, 0, 255) == 5);
  CHECK(gif_cube_index(25, 26, 76) == 0 * 36 + 1 * 6 + 1);  // 25 -> 0, 26 -> 51, 76 -> 51 (77 -> 102)
  CHECK(gif_cube_index(77, 0, 0) == 2 * 36);
  const uint8_t rgb[6] = {255, 0, 0, 10, 128, 240};
  CHECK(gif_cube_frame(rgb, 2) == std::vector<uint8_t>{180, 0 * 36 + 3 * 6 + 5});
  const std::vector<uint8_t> gif = encode_gif(2, 1, {gif_cube_frame(rgb, 2)}, {10}, 0, GifPalette::cube);
  CHECK(gif[10] == 0xF7);
  for (int k = 0; k < 256; k++) {
    CAPTURE(k);
    const int r = k < 216 ? 51 * (k / 36) : 0, g = k < 216 ? 51 * (k / 6 % 6) : 0, b = k < 216 ? 51 * (k % 6) : 0;
    REQUIRE(gif[13 + 3 * k] == r);
    REQUIRE(gif[13 + 3 * k + 1] == g);
    REQUIRE(gif[13 + 3 * k + 2] == b);
  }
  // every channel within 25 of the cube color it maps to
  for (int v = 0; v < 256; v++) {
    const int k = gif_cube_index(static_cast<uint8_t>(v), 0, 0);
    REQUIRE(std::abs(51 * (k / 36) - v) <= 25);
  }
}

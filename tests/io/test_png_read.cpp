// The PNG reader: zlib-compressed files of every color type, bit depth and filter
// (tests/fixtures/png, written by tests/fixtures/zlib_fixtures.py) decode to the pixels
// their formulas give; the library's own PNG writer reads back; and hostile files (bad
// CRCs, bad zlib streams, bombs, truncation, out-of-bounds headers, missing chunks) give
// a clear error naming the file, before anything is allocated from their sizes.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/image_file.h"
#include "ddpm/io/png.h"
#include "tests/io/deflate_writer.h"
#include "tests/testing.h"
#include "tests/memory_limit.h"
#include "tests/temp_dir.h"

using namespace ddpm;
using testing::check_clean_error;

namespace {

// The pixel formulas of tests/fixtures/zlib_fixtures.py.
int sample(int x, int y, int c) { return (x * 37 + y * 91 + c * 53 + ((x * y) % 7) * 11) & 0xFF; }
int low(int x, int y, int depth) { return (x * 3 + y * 5) % (1 << depth); }
std::vector<int> palette_entry(int k) { return {(k * 40) % 256, (k * 90 + 7) % 256, ((255 - k * 13) % 256 + 256) % 256}; }

Image fixture(const std::string& name) {
  const std::string path = "tests/fixtures/png/" + name + ".png";
  std::vector<uint8_t> bytes = testing::read_bytes(path);
  REQUIRE_MESSAGE(!bytes.empty(), path << " is missing: run the suite from the repository root");
  return decode_png(bytes.data(), bytes.size(), path);
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int k = 3; k >= 0; k--) out.push_back(static_cast<uint8_t>(v >> (8 * k)));
}

// A chunk with its length and a correct CRC.
std::vector<uint8_t> chunk(const std::string& type, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(12 + data.size());
  const uint32_t n = static_cast<uint32_t>(data.size());
  for (int k = 0; k < 4; k++) out[size_t(k)] = static_cast<uint8_t>(n >> (24 - 8 * k));
  for (size_t k = 0; k < 4; k++) out[4 + k] = static_cast<uint8_t>(type[k]);
  std::copy(data.begin(), data.end(), out.begin() + 8);
  const uint32_t crc = crc32(out.data() + 4, 4 + data.size());
  for (int k = 0; k < 4; k++) out[8 + data.size() + size_t(k)] = static_cast<uint8_t>(crc >> (24 - 8 * k));
  return out;
}

std::vector<uint8_t> ihdr(uint32_t w, uint32_t h, int depth, int color_type, int interlace = 0, int compression = 0) {
  std::vector<uint8_t> d;
  put_be32(d, w), put_be32(d, h);
  d.insert(d.end(), {uint8_t(depth), uint8_t(color_type), uint8_t(compression), 0, uint8_t(interlace)});
  return chunk("IHDR", d);
}

// A zlib stream of one stored block holding raw (at most 65535 bytes).
std::vector<uint8_t> stored_zlib(const std::vector<uint8_t>& raw) {
  testing::BitWriter w;
  w.put(1, 1), w.put(0, 2);
  const uint32_t n = static_cast<uint32_t>(raw.size());
  w.bytes({uint8_t(n), uint8_t(n >> 8), uint8_t(~n), uint8_t(~n >> 8)});
  w.bytes(raw);
  return w.zlib(raw);
}

std::vector<uint8_t> png_of(const std::vector<std::vector<uint8_t>>& chunks) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  for (const auto& c : chunks) out.insert(out.end(), c.begin(), c.end());
  return out;
}

// A valid 2 x 2 gray PNG's pieces, to be broken one at a time.
const std::vector<uint8_t> kRows = {0, 10, 20, 0, 30, 40};  // two rows: filter None, 2 pixels
std::vector<uint8_t> gray2x2(const std::vector<uint8_t>& rows = kRows) {
  return png_of({ihdr(2, 2, 8, 0), chunk("IDAT", stored_zlib(rows)), chunk("IEND", {})});
}

std::string png_error(const std::vector<uint8_t>& bytes) {
  return testing::error_of([&] { decode_png(bytes.data(), bytes.size(), "t.png"); });
}

void check_pixels(const Image& img, int64_t w, int64_t h, int channels, int (*value)(int, int, int)) {
  REQUIRE(img.width == w);
  REQUIRE(img.height == h);
  REQUIRE(img.channels == channels);
  REQUIRE(img.pixels.size() == size_t(w * h * channels));
  int mismatches = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < channels; c++)
        if (img.pixels[size_t((y * w + x) * channels + c)] != value(x, y, c)) mismatches++;
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("png_read: zlib-written files of every color type, depth and filter decode exactly") {
  check_pixels(fixture("gray8"), 13, 7, 1, sample);
  check_pixels(fixture("rgb8-dynamic"), 33, 17, 3, sample);
  check_pixels(fixture("rgba8"), 9, 6, 4, sample);
  check_pixels(fixture("gray-alpha8"), 11, 5, 2, sample);
  check_pixels(fixture("rgb8-split-idat"), 10, 10, 3, sample);  // IDAT in 4 pieces (one empty), a tEXt before
  // Palette images come back as RGB; the tRNS chunk of palette8 is ignored.
  check_pixels(fixture("palette8"), 12, 9, 3, [](int x, int y, int c) { return palette_entry((x + 3 * y) % 20)[c]; });
  check_pixels(fixture("palette4"), 13, 5, 3, [](int x, int y, int c) { return palette_entry(low(x, y, 4))[c]; });
  check_pixels(fixture("palette2"), 13, 5, 3, [](int x, int y, int c) { return palette_entry(low(x, y, 2))[c]; });
  check_pixels(fixture("palette1"), 13, 5, 3, [](int x, int y, int c) { return palette_entry(low(x, y, 1))[c]; });
  // Low-depth gray is scaled to 0..255: v * 255 / (2^depth - 1).
  check_pixels(fixture("gray4"), 13, 5, 1, [](int x, int y, int) { return low(x, y, 4) * 17; });
  check_pixels(fixture("gray2"), 13, 5, 1, [](int x, int y, int) { return low(x, y, 2) * 85; });
  check_pixels(fixture("gray1"), 13, 5, 1, [](int x, int y, int) { return low(x, y, 1) * 255; });
}

TEST_CASE("png_read: random filtered rows undo as the PNG spec's pseudo-code says, ties included") {
  // Random bytes under every filter type, for 1, 2, 3 and 4 bytes per pixel, against the
  // spec's section 9 written out here: random data hits the Paeth ties (pa == pb,
  // pb == pc) that smooth pictures rarely do.
  auto spec_paeth = [](int a, int b, int c) {
    const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
  };
  uint32_t x = 5;
  for (int channels : {1, 2, 3, 4}) {
    const int w = 24, h = 40, stride = w * channels;
    std::vector<uint8_t> filtered, want(size_t(h * stride));
    for (int y = 0; y < h; y++) {
      const int type = y % 5;
      filtered.push_back(static_cast<uint8_t>(type));
      for (int i = 0; i < stride; i++) {
        x = x * 1103515245u + 12345u;
        const uint8_t f = static_cast<uint8_t>(x >> 24);
        filtered.push_back(f);
        const int a = i >= channels ? want[size_t(y * stride + i - channels)] : 0;
        const int b = y > 0 ? want[size_t((y - 1) * stride + i)] : 0;
        const int c = y > 0 && i >= channels ? want[size_t((y - 1) * stride + i - channels)] : 0;
        const int pred = type == 0 ? 0 : type == 1 ? a : type == 2 ? b : type == 3 ? (a + b) / 2 : spec_paeth(a, b, c);
        want[size_t(y * stride + i)] = static_cast<uint8_t>(f + pred);
      }
    }
    const int color_type = channels == 1 ? 0 : channels == 2 ? 4 : channels == 3 ? 2 : 6;
    const std::vector<uint8_t> png =
        png_of({ihdr(w, h, 8, color_type), chunk("IDAT", stored_zlib(filtered)), chunk("IEND", {})});
    CAPTURE(channels);
    CHECK(decode_png(png.data(), png.size(), "filters.png").pixels == want);
  }
}

TEST_CASE("png_read: the library's own PNG writer reads back, gray, RGB and RGBA") {
  for (int channels : {1, 3, 4}) {
    const int64_t w = 37, h = 11;
    std::vector<uint8_t> pixels(size_t(w * h * channels));
    for (size_t i = 0; i < pixels.size(); i++) pixels[i] = static_cast<uint8_t>(i * 7 + i / 13);
    const std::vector<uint8_t> png = encode_png(w, h, channels, pixels.data());
    const Image img = decode_png(png.data(), png.size(), "mem.png");
    CAPTURE(channels);
    CHECK(img.width == w);
    CHECK(img.height == h);
    CHECK(img.channels == channels);
    CHECK(img.pixels == pixels);
  }
}

TEST_CASE("png_read: a file cut at any byte, or with any bit changed, is an error naming it") {
  const std::string path = "tests/fixtures/png/rgb8-dynamic.png";
  const std::vector<uint8_t> png = testing::read_bytes(path);
  REQUIRE(png.size() > 100);
  for (size_t n = 0; n < png.size(); n++) {
    const std::vector<uint8_t> cut(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string error = png_error(cut);
    CAPTURE(n);
    CHECK(error.find("'t.png'") != std::string::npos);
    CHECK(error.find(n < 8 ? "does not start with the PNG signature" : "truncated") != std::string::npos);
  }
  // Every chunk byte is under a CRC (or is a length, checked against the file), so any
  // change is caught.
  for (size_t i = 0; i < png.size(); i++) {
    std::vector<uint8_t> bad = png;
    bad[i] ^= static_cast<uint8_t>(1 << (i % 8));
    CAPTURE(i);
    CHECK(png_error(bad).find("'t.png'") != std::string::npos);
  }
}

TEST_CASE("png_read: bad signature, bad CRC, chunk lengths beyond the file, misplaced or missing chunks") {
  REQUIRE(png_error(gray2x2()) == "");
  const Image ok = decode_png(gray2x2().data(), gray2x2().size(), "ok");
  CHECK(ok.pixels == std::vector<uint8_t>{10, 20, 30, 40});

  std::vector<uint8_t> crlf = gray2x2();
  crlf[4] = '\n';  // "\r\n" -> "\n\n", as a text-mode transfer might do
  CHECK(png_error(crlf).find("transfer it in binary mode") != std::string::npos);
  std::vector<uint8_t> bad_crc = gray2x2();
  bad_crc[8 + 25 + 8] ^= 1;  // the first byte of IDAT's data
  CHECK(png_error(bad_crc).find("png: 't.png' chunk IDAT at byte 33 has a bad CRC") != std::string::npos);
  std::vector<uint8_t> long_chunk = gray2x2();
  long_chunk[33] = 0x7F;  // IDAT's length becomes 0x7F0000..
  CHECK(png_error(long_chunk).find("chunk IDAT at byte 33 announces 2130706") != std::string::npos);
  CHECK(png_error(long_chunk).find("beyond the end of the file at byte " + std::to_string(gray2x2().size())) !=
        std::string::npos);
  std::vector<uint8_t> huge_length = gray2x2();
  huge_length[33] = 0xFF;  // above 2^31 - 1
  CHECK(png_error(huge_length).find("beyond the end of the file") != std::string::npos);

  const std::vector<uint8_t> idat = chunk("IDAT", stored_zlib(kRows)), iend = chunk("IEND", {});
  CHECK(png_error(png_of({idat, ihdr(2, 2, 8, 0), iend})).find("starts with chunk IDAT where IHDR must come first") !=
        std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), iend})).find("has no IDAT chunk") != std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), idat})).find("truncated at byte") != std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), idat})).find("before its IEND chunk") != std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), ihdr(2, 2, 8, 0), idat, iend})).find("a second IHDR chunk") !=
        std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("ABCD", {1}), idat, iend}))
            .find("an unknown critical chunk ABCD at byte 33") != std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("abCD", {1}), idat, iend})) == "");  // ancillary: skipped
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("ab1D", {1}), idat, iend})).find("is not four letters") !=
        std::string::npos);
  // IDAT split by another chunk: the two halves of one stream, a tEXt between.
  const std::vector<uint8_t> z = stored_zlib(kRows);
  const std::vector<uint8_t> z1(z.begin(), z.begin() + 5), z2(z.begin() + 5, z.end());
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("IDAT", z1), chunk("IDAT", z2), iend})) == "");
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("IDAT", z1), chunk("tEXt", {'a', 0, 'b'}), chunk("IDAT", z2), iend}))
            .find("IDAT chunks split by other chunks") != std::string::npos);
  // IHDR of the wrong length.
  CHECK(png_error(png_of({chunk("IHDR", {0, 0, 0, 2}), idat, iend})).find("an IHDR of 4 bytes; it must be 13") !=
        std::string::npos);
}

TEST_CASE("png_read: IHDR out of bounds or unsupported is refused with the fix") {
  const std::vector<uint8_t> idat = chunk("IDAT", stored_zlib(kRows)), iend = chunk("IEND", {});
  auto error = [&](const std::vector<uint8_t>& header) { return png_error(png_of({header, idat, iend})); };
  CHECK(error(ihdr(0, 2, 8, 0)).find("is 0 x 2 pixels (IHDR); each side must be 1..16384") != std::string::npos);
  CHECK(error(ihdr(2, 16385, 8, 0)).find("is 2 x 16385 pixels") != std::string::npos);
  CHECK(error(ihdr(0xFFFFFFFFu, 0xFFFFFFFFu, 8, 6)).find("each side must be 1..16384") != std::string::npos);
  CHECK(error(ihdr(2, 2, 16, 2)).find("16-bit samples, which this reader does not take; convert it to 8 bits") !=
        std::string::npos);
  CHECK(error(ihdr(2, 2, 16, 0)).find("16-bit samples") != std::string::npos);
  CHECK(error(ihdr(2, 2, 8, 0, 1)).find("interlaced (Adam7)") != std::string::npos);
  CHECK(error(ihdr(2, 2, 8, 0, 2)).find("interlace method 2") != std::string::npos);
  CHECK(error(ihdr(2, 2, 8, 5)).find("color type 5") != std::string::npos);
  CHECK(error(ihdr(2, 2, 4, 2)).find("bit depth 4 with color type 2") != std::string::npos);
  CHECK(error(ihdr(2, 2, 16, 3)).find("bit depth 16 with color type 3") != std::string::npos);
  CHECK(error(ihdr(2, 2, 3, 0)).find("bit depth 3 with color type 0") != std::string::npos);
  CHECK(error(ihdr(2, 2, 8, 0, 0, 1)).find("compression method 1") != std::string::npos);
}

TEST_CASE("png_read: bad image data: zlib errors, short data, filter types, palette indices") {
  const std::vector<uint8_t> iend = chunk("IEND", {});
  // A bad zlib stream under a good CRC: inflate's error, naming the file.
  std::vector<uint8_t> z = stored_zlib(kRows);
  z[0] = 0x77;
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("IDAT", z), iend}))
            .find("inflate: 't.png': compression method 7") != std::string::npos);
  z = stored_zlib(kRows);
  z.back() ^= 1;
  CHECK(png_error(png_of({ihdr(2, 2, 8, 0), chunk("IDAT", z), iend})).find("Adler-32") != std::string::npos);
  // Less data than the header announces.
  CHECK(png_error(gray2x2({0, 10, 20})).find("image data ends after 3 of the 6 bytes its 2 x 2 header announces") !=
        std::string::npos);
  // More: inflate stops at the announced size.
  CHECK(png_error(gray2x2({0, 10, 20, 0, 30, 40, 0})).find("output beyond the 6 bytes expected") != std::string::npos);
  // Filter type 5 in row 1.
  CHECK(png_error(gray2x2({0, 10, 20, 5, 30, 40})).find("row 1 has filter type 5; PNG defines 0..4") !=
        std::string::npos);
  // Palette: index 2 of a 2-entry PLTE; no PLTE; a PLTE after IDAT; a PLTE of 4 bytes.
  const std::vector<uint8_t> plte = chunk("PLTE", {1, 2, 3, 4, 5, 6});
  const std::vector<uint8_t> idat = chunk("IDAT", stored_zlib({0, 1, 2, 0, 0, 1}));
  CHECK(png_error(png_of({ihdr(2, 2, 8, 3), plte, idat, iend})).find("pixel (1, 0) has palette index 2, beyond the 2 entries") !=
        std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 3), idat, iend})).find("a palette image without a PLTE chunk") !=
        std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 3), idat, plte, iend})).find("after another PLTE or after IDAT") !=
        std::string::npos);
  CHECK(png_error(png_of({ihdr(2, 2, 8, 3), chunk("PLTE", {1, 2, 3, 4}), idat, iend})).find("a PLTE of 4 bytes") !=
        std::string::npos);
  const std::vector<uint8_t> fine = chunk("IDAT", stored_zlib({0, 1, 0, 0, 0, 1}));
  const Image img = decode_png(png_of({ihdr(2, 2, 8, 3), plte, fine, iend}).data(),
                               png_of({ihdr(2, 2, 8, 3), plte, fine, iend}).size(), "p.png");
  CHECK(img.channels == 3);
  CHECK(img.pixels == std::vector<uint8_t>{4, 5, 6, 1, 2, 3, 1, 2, 3, 4, 5, 6});
}

TEST_CASE("png_read: decompression bombs and impossible sizes end in a clear error, under a memory limit") {
  testing::TempDir dir;
  const std::vector<uint8_t> iend = chunk("IEND", {});
  // 1. An IHDR announcing 16384 x 16384 RGBA (1 GiB) over 20 bytes of data: refused
  //    before anything is allocated, since deflate cannot expand 20 bytes that far.
  testing::write_bytes(dir / "huge.png", png_of({ihdr(16384, 16384, 8, 6), chunk("IDAT", stored_zlib(kRows)), iend}));
  check_clean_error(testing::run_with_memory_limit([&] { read_image(dir / "huge.png"); }),
                    "which cannot decompress to the 1073758208 bytes its 16384 x 16384 header announces");
  // 2. An 8 x 8 gray image whose stream would inflate to 1 GB (4 million 258-byte
  //    matches, 6.5 MB): inflate stops at the 72 bytes the header announces.
  testing::BitWriter w;
  w.put(1, 1), w.put(1, 2), w.fixed_literal(0);
  for (int i = 0; i < 4000000; i++) w.fixed_literal(285), w.put(0, 5);
  w.fixed_literal(256);
  testing::write_bytes(dir / "bomb.png", png_of({ihdr(8, 8, 8, 0), chunk("IDAT", w.zlib({})), iend}));
  check_clean_error(testing::run_with_memory_limit([&] { read_image(dir / "bomb.png"); }),
                    "'" + (dir / "bomb.png") + "': output beyond the 72 bytes expected (a decompression bomb");
}

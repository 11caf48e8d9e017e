// read_image and the PGM/PPM reader: formats chosen by their first bytes, binary
// netpbm headers (comments, maxval scaling), and hostile files refused with a clear error
// naming them (folders, devices, sparse giants, truncation, 16-bit, formats not read).
#include <sys/stat.h>

#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/image_file.h"
#include "ddpm/io/pnm.h"
#include "tests/testing.h"
#include "tests/memory_limit.h"
#include "tests/temp_dir.h"

using namespace ddpm;
using testing::check_clean_error;

namespace {

std::vector<uint8_t> text(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

std::vector<uint8_t> pnm(const std::string& header, const std::vector<uint8_t>& samples) {
  std::vector<uint8_t> out = text(header);
  out.insert(out.end(), samples.begin(), samples.end());
  return out;
}

std::string pnm_error(const std::vector<uint8_t>& bytes) {
  return testing::error_of([&] { decode_pnm(bytes.data(), bytes.size(), "t.pnm"); });
}

}  // namespace

TEST_CASE("pnm: P5 and P6 read back, with comments, and maxval below 255 scaled") {
  const Image gray = decode_pnm(pnm("P5\n3 2\n255\n", {0, 1, 2, 253, 254, 255}).data(), 6 + 11, "g.pgm");
  CHECK(gray.width == 3);
  CHECK(gray.height == 2);
  CHECK(gray.channels == 1);
  CHECK(gray.pixels == std::vector<uint8_t>{0, 1, 2, 253, 254, 255});

  // Comments anywhere between tokens, any whitespace, and bytes after the image ignored.
  const std::vector<uint8_t> rgb_file = pnm("P6 # made by hand\n# another\n2\t1 #w h\r\n255 ", {1, 2, 3, 4, 5, 6, 99});
  const Image rgb = decode_pnm(rgb_file.data(), rgb_file.size(), "c.ppm");
  CHECK(rgb.channels == 3);
  CHECK(rgb.width == 2);
  CHECK(rgb.height == 1);
  CHECK(rgb.pixels == std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
  // The sample right after the single whitespace may itself be a whitespace byte.
  const std::vector<uint8_t> space_sample = pnm("P5 1 1 255\n", {'\n'});
  CHECK(decode_pnm(space_sample.data(), space_sample.size(), "s.pgm").pixels == std::vector<uint8_t>{'\n'});

  // maxval 15: round(v * 255 / 15) = v * 17; maxval 2: 0, 128, 255.
  const std::vector<uint8_t> m15 = pnm("P5 4 1 15\n", {0, 1, 7, 15});
  CHECK(decode_pnm(m15.data(), m15.size(), "m.pgm").pixels == std::vector<uint8_t>{0, 17, 119, 255});
  const std::vector<uint8_t> m2 = pnm("P5 3 1 2\n", {0, 1, 2});
  CHECK(decode_pnm(m2.data(), m2.size(), "m.pgm").pixels == std::vector<uint8_t>{0, 128, 255});
}

TEST_CASE("pnm: bad headers, 16-bit samples, truncation and samples above maxval are refused") {
  CHECK(pnm_error(pnm("P5 2 2 255\n", {1, 2, 3, 4})) == "");
  CHECK(pnm_error(text("P2 2 2 255\n1 2 3 4")).find("not a binary PGM (P5) or PPM (P6) file (it is netpbm's P2") !=
        std::string::npos);
  CHECK(pnm_error(text("P4 2 2\n")).find("netpbm's P4") != std::string::npos);
  CHECK(pnm_error(text("Q5")).find("'t.pnm' is not a binary PGM (P5) or PPM (P6) file") != std::string::npos);
  CHECK(pnm_error(text("P5 2")).find("truncated at byte 4, inside its header, before the height") != std::string::npos);
  CHECK(pnm_error(text("P5 2 x 255\n")).find("where its header's height (a decimal number) should be") !=
        std::string::npos);
  CHECK(pnm_error(pnm("P5 0 2 255\n", {})).find("is 0 x 2 pixels; each side must be 1..16384") != std::string::npos);
  // A side far beyond the bound saturates (no overflow) and is refused.
  CHECK(pnm_error(text("P5 99999999999999999999999 2 255\n")).find("is more than 16384 x 2 pixels") != std::string::npos);
  CHECK(pnm_error(pnm("P5 1 1 65535\n", {0, 0})).find("16-bit samples (maxval 65535)") != std::string::npos);
  CHECK(pnm_error(pnm("P5 1 1 0\n", {0})).find("maxval 0; netpbm allows 1..65535") != std::string::npos);
  CHECK(pnm_error(pnm("P5 1 1 70000\n", {0})).find("maxval more than 65535; netpbm allows") != std::string::npos);
  CHECK(pnm_error(text("P5 1 1 255")).find("no whitespace byte after its maxval") != std::string::npos);
  CHECK(pnm_error(pnm("P6 2 2 255\n", {1, 2, 3})).find("'t.pnm' is truncated at byte 14: its 2 x 2 header announces 23 bytes") !=
        std::string::npos);
  CHECK(pnm_error(pnm("P5 3 1 15\n", {1, 16, 2})).find("sample 1 (pixel (1, 0)) is 16, above its maxval 15") !=
        std::string::npos);
}

TEST_CASE("read_image: PNG and PGM/PPM by their first bytes; other formats and non-files refused") {
  testing::TempDir dir;
  const std::vector<uint8_t> pixels = {10, 20, 30, 40, 50, 60};
  write_png(dir / "a.png", 2, 1, 3, pixels.data());
  const Image a = read_image(dir / "a.png");
  CHECK(a.channels == 3);
  CHECK(a.pixels == pixels);
  // The extension does not matter; the bytes do.
  testing::write_bytes(dir / "b.png", pnm("P6 2 1 255\n", pixels));
  CHECK(read_image(dir / "b.png").pixels == pixels);

  testing::write_bytes(dir / "c.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10});
  CHECK_THROWS_WITH_AS(read_image(dir / "c.jpg"), doctest::Contains("is a JPEG file this reader knows: it reads PNG"),
                       Error);
  testing::write_bytes(dir / "d.gif", text("GIF89a...."));
  CHECK_THROWS_WITH_AS(read_image(dir / "d.gif"), doctest::Contains("is a GIF file"), Error);
  testing::write_bytes(dir / "e.txt", text("hello"));
  CHECK_THROWS_WITH_AS(read_image(dir / "e.txt"), doctest::Contains(("'" + (dir / "e.txt") + "' is not an image file").c_str()),
                       Error);
  testing::write_bytes(dir / "empty.png", {});
  CHECK_THROWS_WITH_AS(read_image(dir / "empty.png"), doctest::Contains("is not an image file"), Error);
  CHECK_THROWS_WITH_AS(read_image(dir.path), doctest::Contains("is a directory, not a regular file"), Error);
  CHECK_THROWS_WITH_AS(read_image(dir / "missing.png"), doctest::Contains("cannot open"), Error);
}

TEST_CASE("read_image: /dev/zero, a pipe, a sparse 8 GB file and a header naming 16384^2 pixels in a small file") {
  testing::TempDir dir;
  check_clean_error(testing::run_with_memory_limit([] { read_image("/dev/zero"); }), "is a character device");
  REQUIRE(mkfifo((dir / "fifo").c_str(), 0600) == 0);
  check_clean_error(testing::run_with_memory_limit([&] { read_image(dir / "fifo"); }), "is a pipe");
  testing::write_sparse(dir / "big.png", {0x89, 'P', 'N', 'G'}, uint64_t(8) << 30);
  check_clean_error(testing::run_with_memory_limit([&] { read_image(dir / "big.png"); }),
                    "is 8589934592 bytes, more than the 1140850688 this reader accepts for one image");
  testing::write_bytes(dir / "giant.ppm", text("P6 16384 16384 255\n\x01\x02\x03"));
  check_clean_error(testing::run_with_memory_limit([&] { read_image(dir / "giant.ppm"); }),
                    "is truncated at byte 22: its 16384 x 16384 header announces 805306387 bytes");
}

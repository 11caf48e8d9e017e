// The inflate against zlib: streams zlib wrote (tests/fixtures/inflate, written by
// tests/fixtures/zlib_fixtures.py) decompress to the exact payload; and every way a
// stream can be wrong, crafted bit by bit here, gives a clear error.
#include <cstring>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/inflate.h"
#include "ddpm/io/png.h"
#include "tests/io/deflate_writer.h"
#include "tests/testing.h"
#include "tests/temp_dir.h"

using namespace ddpm;
using testing::BitWriter;

namespace {

// payload() of tests/fixtures/zlib_fixtures.py: words from a small vocabulary and random
// bytes, chosen by the C library's classic LCG.
uint32_t lcg(uint32_t x) { return static_cast<uint32_t>((uint64_t(x) * 1103515245u + 12345u) & 0x7FFFFFFFu); }

std::vector<uint8_t> payload(size_t n, uint32_t seed) {
  static const std::vector<std::string> words = {
      "diffusion ", "noise ", "beta_t ", "alpha_bar ", "x0 ", std::string(6, '\0'), std::string(11, '\xff'),
      "epsilon ", "posterior_variance\n", "q_sample "};
  std::vector<uint8_t> out;
  uint32_t x = seed;
  while (out.size() < n) {
    x = lcg(x);
    const uint32_t r = x >> 16;
    if (r % 4 == 0) out.push_back(static_cast<uint8_t>(r & 0xFF));
    else out.insert(out.end(), words[r % words.size()].begin(), words[r % words.size()].end());
  }
  out.resize(n);
  return out;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> out;
  uint32_t x = seed;
  for (size_t i = 0; i < n; i++) {
    x = lcg(x);
    out.push_back(static_cast<uint8_t>((x >> 16) & 0xFF));
  }
  return out;
}

struct Fixture {
  const char* name;
  std::vector<uint8_t> want;
};

std::vector<Fixture> fixtures() {
  return {{"empty", {}},
          {"stored", payload(3000, 1)},
          {"fixed", payload(20000, 3)},
          {"dynamic-level9", payload(100000, 4)},
          {"dynamic-level1", payload(50000, 9)},
          {"huffman-only", payload(5000, 5)},
          {"rle", payload(5000, 6)},
          {"flushes", payload(8000, 7)},
          {"random", random_bytes(3000, 8)},
          {"window-512", payload(10000, 10)}};
}

std::vector<uint8_t> fixture_stream(const std::string& name) {
  std::vector<uint8_t> z = testing::read_bytes("tests/fixtures/inflate/" + name + ".zlib");
  REQUIRE_MESSAGE(!z.empty(), "tests/fixtures/inflate/" << name << ".zlib is missing: run the suite from the repository root");
  return z;
}

// The error zlib_inflate throws on z, or "" when it returns.
std::string inflate_error(const std::vector<uint8_t>& z, size_t max_output = 1 << 20) {
  return testing::error_of([&] { zlib_inflate(z.data(), z.size(), max_output, "test.zlib"); });
}

}  // namespace

TEST_CASE("inflate: zlib's streams of every block type and strategy decompress to the exact bytes") {
  for (const Fixture& f : fixtures()) {
    CAPTURE(f.name);
    const std::vector<uint8_t> z = fixture_stream(f.name);
    const std::vector<uint8_t> got = zlib_inflate(z.data(), z.size(), f.want.size(), f.name);
    CHECK(got.size() == f.want.size());
    CHECK(got == f.want);
    // One byte less room than the stream holds: the cap stops it, with the bomb error.
    if (!f.want.empty())
      CHECK(inflate_error(z, f.want.size() - 1).find("output beyond the " + std::to_string(f.want.size() - 1) +
                                                     " bytes expected") != std::string::npos);
  }
}

TEST_CASE("inflate: the stored blocks of the library's own PNG writer read back, across 65535-byte blocks") {
  // encode_png writes stored blocks of at most 65535 bytes: a 300 x 300 gray image is
  // 90300 bytes of rows, so two blocks.
  std::vector<uint8_t> pixels = payload(300 * 300, 12);
  std::vector<uint8_t> png = encode_png(300, 300, 1, pixels.data());
  // The IDAT chunk is the second: 8 (signature) + 25 (IHDR) bytes in; its data follows
  // its length and type.
  const size_t idat = 8 + 25;
  const uint32_t len = uint32_t(png[idat]) << 24 | uint32_t(png[idat + 1]) << 16 | uint32_t(png[idat + 2]) << 8 | png[idat + 3];
  REQUIRE(std::memcmp(&png[idat + 4], "IDAT", 4) == 0);
  std::vector<uint8_t> raw = zlib_inflate(&png[idat + 8], len, 300 * 301, "grid.png");
  REQUIRE(raw.size() == 300 * 301);
  for (size_t y = 0; y < 300; y++) {
    CHECK(raw[y * 301] == 0);  // filter type None
    CHECK(std::memcmp(&raw[y * 301 + 1], &pixels[y * 300], 300) == 0);
  }
}

TEST_CASE("inflate: a stream cut at any byte is an error that says truncated") {
  // flushes.zlib has dynamic blocks, an empty stored block (sync flush) and the Adler-32.
  const std::vector<uint8_t> z = fixture_stream("flushes");
  for (size_t n = 0; n < z.size(); n++) {
    const std::vector<uint8_t> cut(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(n));
    const std::string error = inflate_error(cut);
    CAPTURE(n);
    CHECK(error.find("'test.zlib'") != std::string::npos);
    CHECK(error.find("truncated") != std::string::npos);
  }
}

TEST_CASE("inflate: every corrupted byte gives an error or, in padding bits, the same bytes") {
  // A changed bit either breaks the stream (a bad code, a wrong Adler-32, ...) or falls in
  // the padding before a byte boundary, which decoders ignore.
  for (const char* name : {"fixed", "stored", "flushes"}) {
    const std::vector<uint8_t> z = fixture_stream(name);
    const std::vector<uint8_t> want = zlib_inflate(z.data(), z.size(), 1 << 20, name);
    int errors = 0;
    for (size_t i = 0; i < z.size(); i += (z.size() > 2000 ? 7 : 1)) {
      std::vector<uint8_t> bad = z;
      bad[i] ^= static_cast<uint8_t>(1 << (i % 8));
      std::vector<uint8_t> got;
      try {
        got = zlib_inflate(bad.data(), bad.size(), 1 << 20, name);
      } catch (const Error&) {
        errors++;
        continue;
      }
      CHECK(got == want);
    }
    CAPTURE(name);
    CHECK(errors > 0);
  }
}

TEST_CASE("inflate: bad zlib headers, a wrong Adler-32 and bytes after the stream are refused") {
  const std::vector<uint8_t> z = fixture_stream("stored");
  auto with = [&](size_t i, uint8_t v) {
    std::vector<uint8_t> bad = z;
    bad[i] = v;
    return inflate_error(bad);
  };
  CHECK(inflate_error({}).find("truncated) inside its 2-byte header") != std::string::npos);
  CHECK(with(0, 0x77).find("compression method 7 (deflate is 8)") != std::string::npos);
  CHECK(with(0, 0x88).find("a window of 2^16 bytes") != std::string::npos);
  CHECK(with(1, 0x02).find("check bits are wrong (not a zlib stream)") != std::string::npos);
  // FDICT set, with the check bits fixed: 0x78 0x20 + k, (0x78 * 256 + FLG) % 31 == 0.
  uint8_t flg = 0x20;
  while ((0x78 * 256 + flg) % 31 != 0) flg++;
  CHECK(with(1, flg).find("a preset dictionary") != std::string::npos);
  CHECK(with(z.size() - 1, static_cast<uint8_t>(z.back() ^ 1)).find("Adler-32 checksum that does not match") !=
        std::string::npos);
  std::vector<uint8_t> longer = z;
  longer.push_back(0);
  CHECK(inflate_error(longer).find("1 bytes after the end of the stream") != std::string::npos);
  // The message names the source and the byte.
  CHECK(with(0, 0x77).find("inflate: 'test.zlib': compression method 7 (deflate is 8) in the header at byte 2") !=
        std::string::npos);
}

TEST_CASE("inflate: crafted blocks: reserved type, stored length, undefined symbols, distances") {
  const std::vector<uint8_t> a = {'a'};
  {  // BTYPE 3
    BitWriter w;
    w.put(1, 1), w.put(3, 2);
    CHECK(inflate_error(w.zlib(a)).find("a block of reserved type 3") != std::string::npos);
  }
  {  // stored: NLEN is not ~LEN
    BitWriter w;
    w.put(1, 1), w.put(0, 2), w.align();
    w.bytes({1, 0, 0xFE, 0xFE, 'a'});
    CHECK(inflate_error(w.zlib(a)).find("length is not the complement of NLEN") != std::string::npos);
  }
  {  // a stored block longer than what is left
    BitWriter w;
    w.put(1, 1), w.put(0, 2), w.align();
    w.bytes({10, 0, 0xF5, 0xFF, 'a'});
    CHECK(inflate_error(w.zlib(a)).find("truncated) inside a stored block of 10 bytes") != std::string::npos);
  }
  {  // fixed: length symbols 286 and 287 exist in the code but not in deflate
    for (int symbol : {286, 287}) {
      BitWriter w;
      w.put(1, 1), w.put(1, 2), w.fixed_literal('a'), w.fixed_literal(symbol), w.put(0, 5), w.fixed_literal(256);
      CHECK(inflate_error(w.zlib(a)).find("length symbol " + std::to_string(symbol) + ", which deflate does not define") !=
            std::string::npos);
    }
  }
  {  // fixed: distance symbols 30 and 31 likewise
    for (int symbol : {30, 31}) {
      BitWriter w;
      w.put(1, 1), w.put(1, 2), w.fixed_literal('a'), w.fixed_literal(257), w.huffman(symbol, 5), w.fixed_literal(256);
      CHECK(inflate_error(w.zlib(a)).find("distance symbol " + std::to_string(symbol) + ", which deflate does not define") !=
            std::string::npos);
    }
  }
  {  // a distance before the start of the output: 'a', then a copy from 2 back
    BitWriter w;
    w.put(1, 1), w.put(1, 2), w.fixed_literal('a'), w.fixed_literal(257), w.huffman(1, 5), w.fixed_literal(256);
    CHECK(inflate_error(w.zlib(a)).find("a distance of 2 bytes back, before the start of the output (1 bytes)") !=
          std::string::npos);
  }
  {  // a well-formed fixed block: 'a', a copy of length 3 from 1 back, end
    BitWriter w;
    w.put(1, 1), w.put(1, 2), w.fixed_literal('a'), w.fixed_literal(257), w.huffman(0, 5), w.fixed_literal(256);
    const std::vector<uint8_t> aaaa = {'a', 'a', 'a', 'a'};
    CHECK(zlib_inflate(w.zlib(aaaa).data(), w.zlib(aaaa).size(), 4, "ok") == aaaa);
  }
}

TEST_CASE("inflate: dynamic blocks: bad code tables are refused, a single distance code is allowed") {
  // Literal/length code: 'a', end-of-block, length 3 (257), length 4 (258): 2 bits each,
  // a complete code; canonical codes in symbol order 00, 01, 10, 11.
  std::vector<int> litlen(259, 0);
  litlen['a'] = litlen[256] = litlen[257] = litlen[258] = 2;
  const std::vector<int> one_distance = {1};  // a single 1-bit distance code: incomplete, allowed
  const std::vector<uint8_t> aaaa = {'a', 'a', 'a', 'a'};
  auto data = [](BitWriter& w) {
    w.huffman(0, 2), w.huffman(2, 2), w.huffman(0, 1), w.huffman(1, 2);  // 'a', length 3 from distance 1, end
  };
  {
    BitWriter w;
    w.dynamic_header(litlen, one_distance, true);
    data(w);
    const std::vector<uint8_t> z = w.zlib(aaaa);
    CHECK(zlib_inflate(z.data(), z.size(), 4, "ok") == aaaa);
  }
  {  // an incomplete literal/length code of more than one symbol
    std::vector<int> incomplete = litlen;
    incomplete[258] = 0;
    BitWriter w;
    w.dynamic_header(incomplete, one_distance, true);
    data(w);
    CHECK(inflate_error(w.zlib(aaaa)).find("literal/length code that is over-subscribed or incomplete") !=
          std::string::npos);
  }
  {  // an over-subscribed literal/length code
    std::vector<int> over = litlen;
    over['b'] = 2;
    BitWriter w;
    w.dynamic_header(over, one_distance, true);
    data(w);
    CHECK(inflate_error(w.zlib(aaaa)).find("literal/length code that is over-subscribed or incomplete") !=
          std::string::npos);
  }
  {  // an over-subscribed distance code
    BitWriter w;
    w.dynamic_header(litlen, {1, 1, 1}, true);
    data(w);
    CHECK(inflate_error(w.zlib(aaaa)).find("distance code that is over-subscribed or incomplete") != std::string::npos);
  }
  {  // no end-of-block code: 'a' and 257 at 1 bit each
    std::vector<int> no_end(258, 0);
    no_end['a'] = no_end[257] = 1;
    BitWriter w;
    w.dynamic_header(no_end, one_distance, true);
    CHECK(inflate_error(w.zlib(aaaa)).find("without an end-of-block code") != std::string::npos);
  }
  {  // an over-subscribed code-length code: 17 symbols of 4 bits
    BitWriter w;
    w.dynamic_header(litlen, one_distance, true, /*code_length_symbols=*/17);
    CHECK(inflate_error(w.zlib(aaaa)).find("code-length code that is over-subscribed or incomplete") != std::string::npos);
  }
  {  // 287 literal/length codes announced (HLIT = 30)
    BitWriter w;
    w.put(1, 1), w.put(2, 2), w.put(30, 5), w.put(0, 5), w.put(15, 4);
    CHECK(inflate_error(w.zlib(aaaa)).find("a dynamic block with 287 length and 1 distance codes") != std::string::npos);
  }
  {  // an incomplete code-length code: 16 -> 1 bit, 0 -> 2 bits, nothing else
    BitWriter w;
    w.put(1, 1), w.put(2, 2), w.put(0, 5), w.put(0, 5), w.put(0, 4);  // 257 + 1 codes; 4 code-length lengths,
    w.put(1, 3), w.put(0, 3), w.put(0, 3), w.put(2, 3);               // in the order 16, 17, 18, 0
    CHECK(inflate_error(w.zlib(aaaa)).find("code-length code that is over-subscribed or incomplete") != std::string::npos);
  }
  {  // a repeat (16) as the first code length. Code-length code: 0 -> "0", 16 -> "1".
    BitWriter w;
    w.put(1, 1), w.put(2, 2), w.put(0, 5), w.put(0, 5), w.put(0, 4);
    w.put(1, 3), w.put(0, 3), w.put(0, 3), w.put(1, 3);
    w.huffman(1, 1), w.put(0, 2);
    CHECK(inflate_error(w.zlib(aaaa)).find("a repeat of the previous code length before any length") !=
          std::string::npos);
  }
  {  // code lengths repeated past HLIT + HDIST: 18 (11..138 zeros) with 138 at the end
    BitWriter w;
    w.put(1, 1), w.put(2, 2), w.put(0, 5), w.put(0, 5), w.put(0, 4);  // 258 lengths in all
    w.put(0, 3), w.put(0, 3), w.put(1, 3), w.put(1, 3);               // 0 -> "0", 18 -> "1"
    w.huffman(1, 1), w.put(127, 7);                                   // 138 zeros
    w.huffman(1, 1), w.put(127, 7);                                   // 138 more: 276 > 258
    CHECK(inflate_error(w.zlib(aaaa)).find("code lengths repeated beyond the number the block announces") !=
          std::string::npos);
  }
}

TEST_CASE("inflate: a decompression bomb stops at the cap, having produced no more than it") {
  // A fixed block: one literal, then matches of 258 bytes from distance 1 at 13 bits each:
  // 100000 of them would be 25.8 MB.
  BitWriter w;
  w.put(1, 1), w.put(1, 2), w.fixed_literal(0);
  for (int i = 0; i < 100000; i++) w.fixed_literal(285), w.put(0, 5);
  w.fixed_literal(256);
  const std::vector<uint8_t> z = w.zlib({});  // the Adler-32 is never reached
  CHECK(z.size() < 200000);
  CHECK(inflate_error(z, 1000).find("output beyond the 1000 bytes expected (a decompression bomb") != std::string::npos);
  CHECK(inflate_error(z, 0).find("output beyond the 0 bytes expected") != std::string::npos);
}

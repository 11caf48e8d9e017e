// tests/io/deflate_writer.h: a bit writer for crafting deflate streams by hand, right or
// wrong, to test the inflate (tests/io/test_inflate.cpp) and the PNG reader's bomb
// handling (tests/io/test_png_read.cpp).
//
//   BitWriter w;
//   w.put(1, 1), w.put(1, 2);           // BFINAL = 1, BTYPE = 1 (fixed Huffman codes)
//   w.fixed_literal('a'), w.fixed_literal(256);
//   std::vector<uint8_t> z = w.zlib({'a'});   // zlib header + the bits + Adler-32 of {'a'}
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ddpm/io/png.h"

namespace ddpm {
namespace testing {

class BitWriter {
 public:
  // n bits of value, least significant first (RFC 1951, section 3.1.1: header fields,
  // extra bits).
  void put(uint32_t value, int n) {
    for (int i = 0; i < n; i++) bit((value >> i) & 1);
  }
  // A Huffman code of len bits, most significant first.
  void huffman(uint32_t code, int len) {
    for (int i = len - 1; i >= 0; i--) bit((code >> i) & 1);
  }
  // A literal/length symbol in the fixed code of block type 1 (RFC 1951, section 3.2.6).
  void fixed_literal(int s) {
    if (s < 144) huffman(0x30 + s, 8);
    else if (s < 256) huffman(0x190 + (s - 144), 9);
    else if (s < 280) huffman(s - 256, 7);
    else huffman(0xC0 + (s - 280), 8);
  }
  void align() {
    while (count_ % 8) bit(0);
  }
  void bytes(const std::vector<uint8_t>& b) {
    align();
    out_.insert(out_.end(), b.begin(), b.end());
    count_ += 8 * b.size();
  }
  // The header of a dynamic block (BFINAL = last, BTYPE = 2) whose codes have the given
  // lengths (litlen.size() - 257 = HLIT, dist.size() - 1 = HDIST). The code-length code
  // gives 4 bits to each of the first `code_length_symbols` symbols 0, 1, ... (16 makes
  // it complete, so length L is written as the 4-bit code L; 17 over-subscribes it).
  void dynamic_header(const std::vector<int>& litlen, const std::vector<int>& dist, bool last,
                      int code_length_symbols = 16) {
    static const int order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    put(last ? 1 : 0, 1), put(2, 2);
    put(static_cast<uint32_t>(litlen.size() - 257), 5), put(static_cast<uint32_t>(dist.size() - 1), 5), put(15, 4);
    for (int i = 0; i < 19; i++) put(order[i] < code_length_symbols ? 4 : 0, 3);
    for (int len : litlen) huffman(static_cast<uint32_t>(len), 4);
    for (int len : dist) huffman(static_cast<uint32_t>(len), 4);
  }
  // The zlib stream: header 0x78 0x01, the bits so far (padded to a byte), and the
  // Adler-32 of `output`, what the stream is meant to decompress to.
  std::vector<uint8_t> zlib(const std::vector<uint8_t>& output) const {
    std::vector<uint8_t> z(2 + out_.size() + 4);
    z[0] = 0x78, z[1] = 0x01;
    std::copy(out_.begin(), out_.end(), z.begin() + 2);
    const uint32_t a = adler32(output.data(), output.size());
    for (size_t k = 0; k < 4; k++) z[2 + out_.size() + k] = static_cast<uint8_t>(a >> (24 - 8 * k));
    return z;
  }

 private:
  void bit(uint32_t b) {
    if (count_ % 8 == 0) out_.push_back(0);
    out_.back() = static_cast<uint8_t>(out_.back() | (b << (count_ % 8)));
    count_++;
  }
  std::vector<uint8_t> out_;
  size_t count_ = 0;
};

}  // namespace testing
}  // namespace ddpm

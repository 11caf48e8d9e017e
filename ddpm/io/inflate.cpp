#include "ddpm/io/inflate.h"

#include <algorithm>

#include "ddpm/core/check.h"
#include "ddpm/io/png.h"

namespace ddpm {

namespace {

constexpr int kMaxBits = 15;         // the longest Huffman code deflate allows
constexpr int kMaxLitLenCodes = 286;  // literal/length symbols a dynamic block may define
constexpr int kMaxDistCodes = 30;
constexpr int kFixedLitLenCodes = 288;  // the fixed codes also define lengths 286, 287 and distances 30, 31,
                                        // which are invalid

// A canonical Huffman code, as puff.c keeps it: how many codes have each length, and the
// symbols in code order (by length, then by symbol value). RFC 1951, section 3.2.2.
struct Huffman {
  uint16_t count[kMaxBits + 1] = {};
  uint16_t symbol[kFixedLitLenCodes] = {};
};

// Fills h from the code length of each of n symbols (0: the symbol has no code). Returns
// 0 for a complete code, a positive number for an incomplete one (codes left unused) and
// a negative one for an over-subscribed one (more codes than lengths allow).
int build_huffman(Huffman& h, const uint8_t* length, int n) {
  std::fill(h.count, h.count + kMaxBits + 1, 0);
  for (int s = 0; s < n; s++) h.count[length[s]]++;
  if (h.count[0] == n) return 0;  // no codes at all: any decode fails
  int left = 1;                   // codes of the current length still unassigned
  for (int len = 1; len <= kMaxBits; len++) {
    left = left * 2 - h.count[len];
    if (left < 0) return left;
  }
  uint16_t offset[kMaxBits + 1];  // where the symbols of each length start in h.symbol
  offset[1] = 0;
  for (int len = 1; len < kMaxBits; len++) offset[len + 1] = static_cast<uint16_t>(offset[len] + h.count[len]);
  for (int s = 0; s < n; s++)
    if (length[s] != 0) h.symbol[offset[length[s]]++] = static_cast<uint16_t>(s);
  return left;
}

// The fixed codes of block type 1 (RFC 1951, section 3.2.6).
struct FixedCodes {
  Huffman litlen, dist;
  FixedCodes() {
    uint8_t length[kFixedLitLenCodes];
    for (int s = 0; s < 144; s++) length[s] = 8;
    for (int s = 144; s < 256; s++) length[s] = 9;
    for (int s = 256; s < 280; s++) length[s] = 7;
    for (int s = 280; s < kFixedLitLenCodes; s++) length[s] = 8;
    build_huffman(litlen, length, kFixedLitLenCodes);
    // All 32 five-bit codes, as zlib builds them, so that 30 and 31 decode and are
    // refused by name rather than as an undefined code.
    for (int s = 0; s < 32; s++) length[s] = 5;
    build_huffman(dist, length, 32);
  }
};

// Length symbols 257..285: base length and extra bits; distance symbols 0..29: base
// distance and extra bits (RFC 1951, section 3.2.5).
constexpr uint16_t kLengthBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr uint8_t kLengthExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr uint16_t kDistBase[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

class Inflater {
 public:
  Inflater(const uint8_t* data, size_t size, size_t max_output, const std::string& source)
      : in_(data), size_(size), max_output_(max_output), source_(source) {}

  std::vector<uint8_t> run() {
    zlib_header();
    // The output grows as it is produced (no reserve from max_output): a stream that
    // fails early has cost only what it produced.
    for (bool last = false; !last;) {
      last = bits(1) == 1;
      const uint32_t type = bits(2);
      if (type == 0) stored_block();
      else if (type == 1) fixed_block();
      else if (type == 2) dynamic_block();
      else fail("a block of reserved type 3");
    }
    adler_trailer();
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    DDPM_FAIL("inflate: '" << source_ << "': " << what << " at byte " << pos_
                           << " of the zlib stream: corrupt data; re-save or download the file again");
  }

  // The next `need` bits (need <= 16), least significant first (RFC 1951, section 3.1.1).
  // Bytes are loaded one at a time, so fewer than 8 bits are ever held unread: a stored
  // block's "skip to the byte boundary" simply drops them.
  uint32_t bits(int need) {
    while (bit_count_ < need) {
      if (pos_ == size_) fail("the stream ends early (truncated)");
      bit_buffer_ |= uint32_t(in_[pos_++]) << bit_count_;
      bit_count_ += 8;
    }
    const uint32_t value = bit_buffer_ & ((uint32_t(1) << need) - 1);
    bit_buffer_ >>= need;
    bit_count_ -= need;
    return value;
  }

  // One symbol: the code is read a bit at a time, most significant first, and compared
  // with the first code of each length (canonical codes are consecutive within a length).
  int decode(const Huffman& h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= kMaxBits; len++) {
      code |= static_cast<int>(bits(1));
      const int count = h.count[len];
      if (code - first < count) return h.symbol[index + (code - first)];
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    fail("a Huffman code that the block's code table does not define");
  }

  void put(uint8_t byte) {
    if (out_.size() == max_output_) bomb();
    out_.push_back(byte);
  }

  [[noreturn]] void bomb() const {
    fail("output beyond the " + std::to_string(max_output_) +
         " bytes expected (a decompression bomb, or data that does not belong to this image)");
  }

  // RFC 1950, section 2.2: CMF (method and window), FLG (check bits, dictionary flag).
  void zlib_header() {
    if (size_ < 2) {
      pos_ = size_;
      fail("the stream ends early (truncated) inside its 2-byte header");
    }
    const uint8_t cmf = in_[0], flg = in_[1];
    pos_ = 2;
    if ((cmf & 0x0F) != 8) fail("compression method " + std::to_string(cmf & 0x0F) + " (deflate is 8) in the header");
    if ((cmf >> 4) > 7) fail("a window of 2^" + std::to_string((cmf >> 4) + 8) + " bytes (at most 2^15) in the header");
    if ((cmf * 256 + flg) % 31 != 0) fail("a header whose check bits are wrong (not a zlib stream)");
    if (flg & 0x20) fail("a preset dictionary, which PNG does not allow,");
  }

  // Block type 0: byte-aligned LEN, NLEN = ~LEN, then LEN bytes as they are.
  void stored_block() {
    bit_buffer_ = 0, bit_count_ = 0;
    if (size_ - pos_ < 4) {
      pos_ = size_;
      fail("the stream ends early (truncated) inside a stored block's length");
    }
    const uint32_t len = in_[pos_] | uint32_t(in_[pos_ + 1]) << 8;
    const uint32_t nlen = in_[pos_ + 2] | uint32_t(in_[pos_ + 3]) << 8;
    if (len != (~nlen & 0xFFFF)) fail("a stored block whose length is not the complement of NLEN");
    pos_ += 4;
    if (size_ - pos_ < len) {
      pos_ = size_;
      fail("the stream ends early (truncated) inside a stored block of " + std::to_string(len) + " bytes");
    }
    if (max_output_ - out_.size() < len) bomb();
    out_.insert(out_.end(), in_ + pos_, in_ + pos_ + len);
    pos_ += len;
  }

  void fixed_block() {
    static const FixedCodes fixed;
    codes(fixed.litlen, fixed.dist);
  }

  // Block type 2: the code lengths of both codes, themselves Huffman-coded with a code of
  // 19 symbols (0..15 a length, 16 repeat the previous, 17 and 18 runs of zeros).
  void dynamic_block() {
    const int nlen = static_cast<int>(bits(5)) + 257, ndist = static_cast<int>(bits(5)) + 1;
    const int ncode = static_cast<int>(bits(4)) + 4;
    if (nlen > kMaxLitLenCodes || ndist > kMaxDistCodes)
      fail("a dynamic block with " + std::to_string(nlen) + " length and " + std::to_string(ndist) +
           " distance codes (at most 286 and 30)");
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t length[kMaxLitLenCodes + kMaxDistCodes] = {};
    for (int i = 0; i < ncode; i++) length[order[i]] = static_cast<uint8_t>(bits(3));
    Huffman lencode, distcode;
    if (build_huffman(lencode, length, 19) != 0) fail("a code-length code that is over-subscribed or incomplete");

    for (int index = 0; index < nlen + ndist;) {
      int symbol = decode(lencode);
      if (symbol < 16) {
        length[index++] = static_cast<uint8_t>(symbol);
        continue;
      }
      uint8_t value = 0;
      int repeat;
      if (symbol == 16) {
        if (index == 0) fail("a repeat of the previous code length before any length");
        value = length[index - 1];
        repeat = 3 + static_cast<int>(bits(2));
      } else if (symbol == 17) {
        repeat = 3 + static_cast<int>(bits(3));
      } else {
        repeat = 11 + static_cast<int>(bits(7));
      }
      if (index + repeat > nlen + ndist) fail("code lengths repeated beyond the number the block announces");
      while (repeat--) length[index++] = value;
    }
    if (length[256] == 0) fail("a dynamic block without an end-of-block code");
    // An incomplete code is allowed only when it is a single code of one bit (RFC 1951
    // permits one distance code; zlib writes one-symbol codes that way).
    int left = build_huffman(lencode, length, nlen);
    if (left < 0 || (left > 0 && nlen != lencode.count[0] + lencode.count[1]))
      fail("a literal/length code that is over-subscribed or incomplete");
    left = build_huffman(distcode, length + nlen, ndist);
    if (left < 0 || (left > 0 && ndist != distcode.count[0] + distcode.count[1]))
      fail("a distance code that is over-subscribed or incomplete");
    codes(lencode, distcode);
  }

  // The symbols of one block, to its end-of-block code (256): literals, and (length,
  // distance) pairs that copy from the output already written.
  void codes(const Huffman& lencode, const Huffman& distcode) {
    for (;;) {
      int symbol = decode(lencode);
      if (symbol < 256) {
        put(static_cast<uint8_t>(symbol));
        continue;
      }
      if (symbol == 256) return;
      symbol -= 257;
      if (symbol >= 29) fail("length symbol " + std::to_string(symbol + 257) + ", which deflate does not define,");
      const size_t len = kLengthBase[symbol] + bits(kLengthExtra[symbol]);
      const int dsym = decode(distcode);
      if (dsym >= 30) fail("distance symbol " + std::to_string(dsym) + ", which deflate does not define,");
      const size_t dist = kDistBase[dsym] + bits(kDistExtra[dsym]);
      if (dist > out_.size())
        fail("a distance of " + std::to_string(dist) + " bytes back, before the start of the output (" +
             std::to_string(out_.size()) + " bytes),");
      if (max_output_ - out_.size() < len) bomb();
      // Byte by byte: the copy may overlap what it writes (dist < len repeats a pattern).
      for (size_t i = 0; i < len; i++) out_.push_back(out_[out_.size() - dist]);
    }
  }

  // After the last block, from the next byte boundary: the Adler-32 of the output,
  // big-endian; and nothing after it.
  void adler_trailer() {
    bit_buffer_ = 0, bit_count_ = 0;
    if (size_ - pos_ < 4) {
      pos_ = size_;
      fail("the stream ends early (truncated) inside its Adler-32 checksum");
    }
    const uint32_t want = uint32_t(in_[pos_]) << 24 | uint32_t(in_[pos_ + 1]) << 16 | uint32_t(in_[pos_ + 2]) << 8 |
                          in_[pos_ + 3];
    const uint32_t got = adler32(out_.data(), out_.size());
    if (got != want) fail("an Adler-32 checksum that does not match the data (the data is corrupt)");
    pos_ += 4;
    if (pos_ != size_) fail(std::to_string(size_ - pos_) + " bytes after the end of the stream, starting");
  }

  const uint8_t* in_;
  size_t size_, pos_ = 0;
  uint32_t bit_buffer_ = 0;
  int bit_count_ = 0;
  size_t max_output_;
  const std::string& source_;
  std::vector<uint8_t> out_;
};

}  // namespace

std::vector<uint8_t> zlib_inflate(const uint8_t* data, size_t size, size_t max_output, const std::string& source) {
  return Inflater(data, size, max_output, source).run();
}

}  // namespace ddpm

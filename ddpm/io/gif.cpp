#include "ddpm/io/gif.h"

#include <unordered_map>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"

namespace ddpm {

namespace {

constexpr int kClear = 256;      // clear code for minimum code size 8
constexpr int kEnd = 257;        // end-of-information code
constexpr int kFirstCode = 258;  // first table entry after the 256 single bytes
constexpr int kMaxCodes = 4096;  // 12-bit codes

// Codes of `width` bits, least significant bit first (GIF89a appendix F).
struct BitWriter {
  std::vector<uint8_t> out;
  uint32_t acc = 0;
  int bits = 0;
  void put(uint32_t code, int width) {
    acc |= code << bits;
    bits += width;
    while (bits >= 8) {
      out.push_back(static_cast<uint8_t>(acc & 0xFF));
      acc >>= 8;
      bits -= 8;
    }
  }
  void flush() {
    if (bits > 0) out.push_back(static_cast<uint8_t>(acc & 0xFF));
    acc = 0;
    bits = 0;
  }
};

void put_u16(std::vector<uint8_t>& out, int64_t v) {
  out.push_back(static_cast<uint8_t>(v & 0xFF));
  out.push_back(static_cast<uint8_t>((v >> 8) & 0xFF));
}

}  // namespace

std::vector<uint8_t> gif_lzw_encode(const uint8_t* pixels, size_t size) {
  BitWriter w;
  int width = 9, next = kFirstCode;
  std::unordered_map<uint32_t, uint16_t> table;  // (prefix code << 8 | byte) -> code
  w.put(kClear, width);
  if (size > 0) {
    uint32_t prefix = pixels[0];  // the code of the longest string matched so far
    for (size_t i = 1; i < size; i++) {
      const uint32_t key = prefix << 8 | pixels[i];
      auto it = table.find(key);
      if (it != table.end()) {
        prefix = it->second;
        continue;
      }
      w.put(prefix, width);
      table.emplace(key, static_cast<uint16_t>(next++));
      // The decoder adds this entry one code later, then widens when its next code is
      // 1 << width; our code after this one must already be written that wide.
      if (next - 1 == (1 << width) && width < 12) width++;
      if (next == kMaxCodes) {  // table full: start over
        w.put(kClear, width);
        table.clear();
        width = 9;
        next = kFirstCode;
      }
      prefix = pixels[i];
    }
    w.put(prefix, width);
    // Reading that code, the decoder adds an entry and may widen before the end code.
    if (next > kFirstCode && next == (1 << width) && width < 12) width++;
  }
  w.put(kEnd, width);
  w.flush();
  return w.out;
}

std::vector<uint8_t> gif_lzw_decode(const uint8_t* codes, size_t size) {
  std::vector<int> prefix(kMaxCodes, -1), length(kMaxCodes, 1);
  std::vector<uint8_t> suffix(kMaxCodes), first(kMaxCodes);
  for (int c = 0; c < 256; c++) suffix[c] = first[c] = static_cast<uint8_t>(c);
  std::vector<uint8_t> out;
  size_t bitpos = 0;
  int width = 9, next = kFirstCode, prev = -1;
  auto emit = [&](int code) {  // appends the string of `code`
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(length[code]));
    for (int c = code, k = length[code] - 1; c >= 0; c = prefix[c], k--) out[at + static_cast<size_t>(k)] = suffix[c];
  };
  for (;;) {
    DDPM_CHECK(bitpos + static_cast<size_t>(width) <= size * 8,
               "gif_lzw_decode: the code stream ends at byte " << size << " without an end code");
    int code = 0;
    for (int b = 0; b < width; b++, bitpos++) code |= ((codes[bitpos / 8] >> (bitpos % 8)) & 1) << b;
    if (code == kClear) {
      width = 9;
      next = kFirstCode;
      prev = -1;
      continue;
    }
    if (code == kEnd) break;
    if (prev < 0) {
      DDPM_CHECK(code < 256, "gif_lzw_decode: first code after a clear is " << code << ", not a byte");
      emit(code);
      prev = code;
      continue;
    }
    DDPM_CHECK(code <= next && code != kClear && code != kEnd,
               "gif_lzw_decode: code " << code << " is not in the table (next " << next << ")");
    if (next < kMaxCodes) {
      // the new entry is prev's string + the first byte of code's string (of prev's when code == next)
      prefix[next] = prev;
      first[next] = first[prev];
      suffix[next] = code == next ? first[prev] : first[code];
      length[next] = length[prev] + 1;
      next++;
      if (next == (1 << width) && width < 12) width++;
    }
    emit(code);
    prev = code;
  }
  return out;
}

uint8_t gif_cube_index(uint8_t r, uint8_t g, uint8_t b) {
  auto level = [](uint8_t v) { return (v + 25) / 51; };  // the nearest of 0, 51, ..., 255
  return static_cast<uint8_t>(36 * level(r) + 6 * level(g) + level(b));
}

std::vector<uint8_t> gif_cube_frame(const uint8_t* rgb, size_t pixels) {
  std::vector<uint8_t> out(pixels);
  for (size_t i = 0; i < pixels; i++) out[i] = gif_cube_index(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
  return out;
}

std::vector<uint8_t> encode_gif(int64_t width, int64_t height, const std::vector<std::vector<uint8_t>>& frames,
                                const std::vector<int>& delays_cs, int loop_count, GifPalette palette) {
  DDPM_CHECK(width >= 1 && height >= 1 && width <= 65535 && height <= 65535,
             "encode_gif: size " << width << "x" << height << " must be 1..65535 on each side");
  DDPM_CHECK(!frames.empty() && frames.size() == delays_cs.size(),
             "encode_gif: " << frames.size() << " frames and " << delays_cs.size() << " delays; need one delay per frame");
  DDPM_CHECK(loop_count >= 0 && loop_count <= 65535, "encode_gif: loop count " << loop_count << " not in 0..65535");
  std::vector<uint8_t> out = {'G', 'I', 'F', '8', '9', 'a'};
  // Logical screen descriptor: size, packed (global table, 8-bit color resolution, 256 entries), background, aspect.
  put_u16(out, width);
  put_u16(out, height);
  out.insert(out.end(), {0xF7, 0x00, 0x00});
  for (int k = 0; k < 256; k++) {
    if (palette == GifPalette::gray) out.insert(out.end(), {uint8_t(k), uint8_t(k), uint8_t(k)});
    else if (k < 216) out.insert(out.end(), {uint8_t(51 * (k / 36)), uint8_t(51 * (k / 6 % 6)), uint8_t(51 * (k % 6))});
    else out.insert(out.end(), {0, 0, 0});  // unused
  }
  // NETSCAPE2.0 application extension: loop count.
  out.insert(out.end(), {0x21, 0xFF, 0x0B, 'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0', 0x03, 0x01});
  put_u16(out, loop_count);
  out.push_back(0x00);
  for (size_t f = 0; f < frames.size(); f++) {
    DDPM_CHECK(static_cast<int64_t>(frames[f].size()) == width * height,
               "encode_gif: frame " << f << " has " << frames[f].size() << " bytes, expected " << width * height);
    DDPM_CHECK(delays_cs[f] >= 0 && delays_cs[f] <= 65535, "encode_gif: delay " << delays_cs[f] << " not in 0..65535");
    // Graphic control extension: disposal 1 (leave in place), no transparency, delay.
    out.insert(out.end(), {0x21, 0xF9, 0x04, 0x04});
    put_u16(out, delays_cs[f]);
    out.insert(out.end(), {0x00, 0x00});
    // Image descriptor: the whole screen, no local color table, not interlaced.
    out.push_back(0x2C);
    put_u16(out, 0);
    put_u16(out, 0);
    put_u16(out, width);
    put_u16(out, height);
    out.push_back(0x00);
    // Image data: LZW minimum code size, then the codes in sub-blocks of <= 255 bytes, then 0.
    out.push_back(8);
    std::vector<uint8_t> codes = gif_lzw_encode(frames[f].data(), frames[f].size());
    for (size_t at = 0; at < codes.size(); at += 255) {
      const size_t n = std::min<size_t>(255, codes.size() - at);
      out.push_back(static_cast<uint8_t>(n));
      out.insert(out.end(), codes.begin() + static_cast<std::ptrdiff_t>(at),
                 codes.begin() + static_cast<std::ptrdiff_t>(at + n));
    }
    out.push_back(0x00);
  }
  out.push_back(0x3B);  // trailer
  return out;
}

void write_gif(const std::string& path, int64_t width, int64_t height,
               const std::vector<std::vector<uint8_t>>& frames, const std::vector<int>& delays_cs, int loop_count,
               GifPalette palette) {
  write_file_atomic(path, encode_gif(width, height, frames, delays_cs, loop_count, palette));
}

}  // namespace ddpm

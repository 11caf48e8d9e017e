// png_read.cpp: decode_png (png.h), the PNG reader. The file is walked chunk by chunk,
// each checked (length inside the file, CRC) before its data is used; IHDR's sizes are
// bounded before anything is allocated from them; the image data is inflated with the
// size IHDR announces as the cap, then unfiltered row by row and expanded to 8 bits.
#include <cstring>

#include "ddpm/core/check.h"
#include "ddpm/io/inflate.h"
#include "ddpm/io/png.h"

namespace ddpm {

namespace {

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

std::string hex32(uint32_t v) {
  static const char* digits = "0123456789ABCDEF";
  std::string s = "0x";
  for (int k = 28; k >= 0; k -= 4) s += digits[(v >> k) & 0xF];
  return s;
}

// A chunk type for messages: its four letters, or their codes when they are not letters.
std::string chunk_name(const uint8_t* type) {
  std::string s;
  for (int i = 0; i < 4; i++) {
    const bool letter = (type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z');
    s += letter ? std::string(1, static_cast<char>(type[i])) : "\\x" + hex32(type[i]).substr(8);
  }
  return s;
}

// IHDR, as PNG spec section 11.2.2 defines it.
struct Header {
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  int samples = 0;       // per pixel in the file: gray 1, RGB 3, palette 1, gray+alpha 2, RGBA 4
  int out_channels = 0;  // per pixel in the Image: the same, except palette -> 3 (RGB)
};

Header parse_ihdr(const uint8_t* d, const std::string& source) {
  Header h;
  h.width = be32(d), h.height = be32(d + 4);
  h.bit_depth = d[8], h.color_type = d[9];
  const int compression = d[10], filter = d[11], interlace = d[12];
  DDPM_CHECK(h.width >= 1 && h.height >= 1 && h.width <= kImageMaxSide && h.height <= kImageMaxSide,
             "png: '" << source << "' is " << h.width << " x " << h.height << " pixels (IHDR); each side must be 1.."
                      << kImageMaxSide << ": corrupt, or too large for this reader");
  switch (h.color_type) {
    case 0: h.samples = 1, h.out_channels = 1; break;  // gray
    case 2: h.samples = 3, h.out_channels = 3; break;  // RGB
    case 3: h.samples = 1, h.out_channels = 3; break;  // palette
    case 4: h.samples = 2, h.out_channels = 2; break;  // gray + alpha
    case 6: h.samples = 4, h.out_channels = 4; break;  // RGBA
    default: DDPM_FAIL("png: '" << source << "' has color type " << h.color_type
                                << " (IHDR), which PNG does not define (0, 2, 3, 4, 6): corrupt");
  }
  const int depth = h.bit_depth;
  const bool valid_depth = h.color_type == 0   ? (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)
                           : h.color_type == 3 ? (depth == 1 || depth == 2 || depth == 4 || depth == 8)
                                               : (depth == 8 || depth == 16);
  DDPM_CHECK(valid_depth, "png: '" << source << "' has bit depth " << depth << " with color type " << h.color_type
                                   << " (IHDR), a combination PNG does not allow: corrupt");
  DDPM_CHECK(depth != 16, "png: '" << source << "' has 16-bit samples, which this reader does not take; convert it "
                                   << "to 8 bits (for example `convert in.png -depth 8 out.png`)");
  DDPM_CHECK(compression == 0 && filter == 0,
             "png: '" << source << "' has compression method " << compression << " and filter method " << filter
                      << " (IHDR); PNG defines only 0 for both: corrupt");
  DDPM_CHECK(interlace == 0, "png: '" << source << "' is "
                                      << (interlace == 1 ? "interlaced (Adam7), which this reader does not take; re-save "
                                                           "it without interlacing (for example `convert in.png "
                                                           "-interlace none out.png`)"
                                                         : "of interlace method " + std::to_string(interlace) +
                                                               " (IHDR), which PNG does not define: corrupt"));
  const uint64_t bytes = uint64_t(h.width) * h.height * uint64_t(h.out_channels);
  DDPM_CHECK(bytes <= kImageMaxBytes, "png: '" << source << "' is " << h.width << " x " << h.height << " x "
                                               << h.out_channels << " = " << bytes << " bytes of pixels, more than the "
                                               << kImageMaxBytes << " this reader accepts");
  return h;
}

// The Paeth predictor (PNG spec, section 9.4): of left, up and up-left, the one closest
// to left + up - upleft, ties going to left, then up.
uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
  if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
  if (pb <= pc) return static_cast<uint8_t>(b);
  return static_cast<uint8_t>(c);
}

// Reverses the per-row filters in place. raw holds height rows of 1 + row_bytes (the
// filter type, then the filtered bytes); bpp is the bytes per complete pixel, at least 1.
void unfilter(uint8_t* raw, uint64_t height, size_t row_bytes, size_t bpp, const std::string& source) {
  const uint8_t* prev = nullptr;  // the previous row's unfiltered bytes; none above row 0
  for (uint64_t y = 0; y < height; y++) {
    uint8_t* row = raw + y * (1 + row_bytes);
    const int type = row[0];
    uint8_t* cur = row + 1;
    switch (type) {
      case 0: break;  // None
      case 1:         // Sub: + left
        for (size_t i = bpp; i < row_bytes; i++) cur[i] = static_cast<uint8_t>(cur[i] + cur[i - bpp]);
        break;
      case 2:  // Up: + above
        if (prev)
          for (size_t i = 0; i < row_bytes; i++) cur[i] = static_cast<uint8_t>(cur[i] + prev[i]);
        break;
      case 3:  // Average: + floor((left + above) / 2)
        for (size_t i = 0; i < row_bytes; i++) {
          const int left = i >= bpp ? cur[i - bpp] : 0, up = prev ? prev[i] : 0;
          cur[i] = static_cast<uint8_t>(cur[i] + ((left + up) >> 1));
        }
        break;
      case 4:  // Paeth: + paeth(left, above, above-left)
        for (size_t i = 0; i < row_bytes; i++) {
          const int left = i >= bpp ? cur[i - bpp] : 0, up = prev ? prev[i] : 0;
          const int upleft = prev && i >= bpp ? prev[i - bpp] : 0;
          cur[i] = static_cast<uint8_t>(cur[i] + paeth(left, up, upleft));
        }
        break;
      default:
        DDPM_FAIL("png: '" << source << "' row " << y << " has filter type " << type
                           << "; PNG defines 0..4: corrupt image data");
    }
    prev = cur;
  }
}

// What the chunks of a PNG file say: the header, the palette and where the image data lie.
struct Chunks {
  Header h;
  std::vector<uint8_t> palette;  // RGB triples
  // Where the IDAT chunks' data lie: they must be consecutive (PNG spec, section 5.6).
  std::vector<std::pair<size_t, size_t>> idat;
  uint64_t idat_bytes = 0;
};

// Walks the chunks from after the signature to IEND, checking each one's length against the
// file and its CRC before reading it, and their order (IHDR first, PLTE before IDAT, IDATs
// consecutive, no unknown critical chunk).
Chunks read_chunks(const uint8_t* bytes, size_t size, const std::string& source) {
  Chunks c;
  bool have_header = false, have_end = false, idat_ended = false;
  size_t pos = 8;
  while (!have_end) {
    DDPM_CHECK(size - pos >= 12, "png: '" << source << "' is truncated at byte " << size
                                          << (size == pos ? "" : ", inside a chunk header,")
                                          << " before its IEND chunk; download or copy it again");
    const uint32_t len = be32(bytes + pos);
    const uint8_t* type = bytes + pos + 4;
    const std::string name = chunk_name(type);
    DDPM_CHECK(name.size() == 4, "png: '" << source << "' has a chunk at byte " << pos << " whose type '" << name
                                          << "' is not four letters: corrupt");
    DDPM_CHECK(len <= 0x7FFFFFFFu && len <= size - pos - 12,
               "png: '" << source << "' chunk " << name << " at byte " << pos << " announces " << len
                        << " bytes of data, beyond the end of the file at byte " << size << ": truncated or corrupt");
    const uint8_t* data = type + 4;
    const uint32_t stored_crc = be32(data + len), crc = crc32(type, 4 + size_t(len));
    DDPM_CHECK(stored_crc == crc, "png: '" << source << "' chunk " << name << " at byte " << pos << " has a bad CRC ("
                                           << hex32(stored_crc) << " stored, " << hex32(crc)
                                           << " computed): the file is corrupt");
    DDPM_CHECK(have_header || name == "IHDR", "png: '" << source << "' starts with chunk " << name
                                                       << " where IHDR must come first: corrupt");
    if (name != "IDAT" && !c.idat.empty()) idat_ended = true;
    if (name == "IHDR") {
      DDPM_CHECK(!have_header, "png: '" << source << "' has a second IHDR chunk at byte " << pos << ": corrupt");
      DDPM_CHECK(len == 13, "png: '" << source << "' has an IHDR of " << len << " bytes; it must be 13: corrupt");
      c.h = parse_ihdr(data, source);
      have_header = true;
    } else if (name == "PLTE") {
      DDPM_CHECK(c.palette.empty() && c.idat.empty(), "png: '" << source << "' has a PLTE chunk at byte " << pos
                                                               << " after another PLTE or after IDAT: corrupt");
      DDPM_CHECK(len >= 3 && len <= 768 && len % 3 == 0, "png: '" << source << "' has a PLTE of " << len
                                                                  << " bytes; it must hold 1..256 RGB entries");
      c.palette.assign(data, data + len);
    } else if (name == "IDAT") {
      DDPM_CHECK(!idat_ended, "png: '" << source << "' has IDAT chunks split by other chunks (again at byte " << pos
                                       << "); they must be consecutive: corrupt");
      c.idat.emplace_back(static_cast<size_t>(data - bytes), static_cast<size_t>(len));
      c.idat_bytes += len;
    } else if (name == "IEND") {
      have_end = true;
    } else {
      // The case of the first letter says whether a decoder may skip the chunk (PNG spec,
      // section 5.4): lower case is ancillary (tRNS, gAMA, tEXt, ...), upper case critical.
      DDPM_CHECK(type[0] >= 'a', "png: '" << source << "' has an unknown critical chunk " << name << " at byte "
                                          << pos << ", which a reader must not skip");
    }
    pos += 12 + size_t(len);
  }
  DDPM_CHECK(!c.idat.empty(), "png: '" << source << "' has no IDAT chunk: no image data");
  DDPM_CHECK(c.h.color_type != 3 || !c.palette.empty(),
             "png: '" << source << "' is a palette image without a PLTE chunk before its IDAT: corrupt");
  return c;
}

// The filtered rows the header announces, each a filter byte then row_bytes =
// ceil(width * bits per pixel / 8) bytes, inflated from the joined IDAT data. All of it is
// bounded: at most 16384 * (1 + 16384 * 4) bytes, and no more than deflate can expand the
// IDAT bytes to.
std::vector<uint8_t> inflate_rows(const uint8_t* bytes, const Chunks& c, size_t row_bytes, const std::string& source) {
  const Header& h = c.h;
  const uint64_t raw_size = uint64_t(h.height) * (1 + row_bytes);
  DDPM_CHECK(raw_size <= kDeflateMaxRatio * c.idat_bytes,
             "png: '" << source << "' has " << c.idat_bytes << " bytes of image data (IDAT), which cannot decompress to "
                      << "the " << raw_size << " bytes its " << h.width << " x " << h.height
                      << " header announces (deflate expands at most " << kDeflateMaxRatio
                      << " times): truncated or corrupt");
  std::vector<uint8_t> z;
  z.reserve(static_cast<size_t>(c.idat_bytes));
  for (const auto& piece : c.idat) z.insert(z.end(), bytes + piece.first, bytes + piece.first + piece.second);
  std::vector<uint8_t> raw = zlib_inflate(z.data(), z.size(), static_cast<size_t>(raw_size), source);
  DDPM_CHECK(raw.size() == raw_size, "png: '" << source << "' image data ends after " << raw.size() << " of the "
                                              << raw_size << " bytes its " << h.width << " x " << h.height
                                              << " header announces: truncated or corrupt");
  return raw;
}

// Expands the unfiltered rows to 8-bit samples: palette indices to RGB, low bit depths to 0..255.
Image expand_samples(const std::vector<uint8_t>& raw, const Chunks& c, size_t row_bytes, const std::string& source) {
  const Header& h = c.h;
  Image img;
  img.width = h.width, img.height = h.height, img.channels = h.out_channels;
  img.pixels.resize(static_cast<size_t>(uint64_t(h.width) * h.height * uint64_t(h.out_channels)));
  const size_t entries = c.palette.size() / 3;
  const int depth = h.bit_depth, scale = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1;
  uint8_t* out = img.pixels.data();
  for (uint64_t y = 0; y < h.height; y++) {
    const uint8_t* row = raw.data() + y * (1 + row_bytes) + 1;
    if (depth == 8 && h.color_type != 3) {
      std::memcpy(out, row, row_bytes);
      out += row_bytes;
      continue;
    }
    for (uint64_t x = 0; x < h.width; x++) {
      // The sample of pixel x: 8 bits, or `depth` bits packed from the most significant.
      const uint64_t bit = x * depth;
      const int v = depth == 8 ? row[x] : (row[bit / 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1);
      if (h.color_type == 3) {
        DDPM_CHECK(size_t(v) < entries, "png: '" << source << "' pixel (" << x << ", " << y << ") has palette index "
                                                 << v << ", beyond the " << entries << " entries of PLTE: corrupt");
        std::memcpy(out, &c.palette[3 * size_t(v)], 3);
        out += 3;
      } else {
        *out++ = static_cast<uint8_t>(v * scale);
      }
    }
  }
  return img;
}

}  // namespace

Image decode_png(const uint8_t* bytes, size_t size, const std::string& source) {
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  DDPM_CHECK(size >= 8 && std::memcmp(bytes, signature, 8) == 0,
             "png: '" << source << "' does not start with the PNG signature: not a PNG file"
                      << (size >= 8 && std::memcmp(bytes + 1, "PNG", 3) == 0
                              ? " (its line endings were converted: transfer it in binary mode)"
                              : ""));
  const Chunks c = read_chunks(bytes, size, source);
  const size_t bits_per_pixel = size_t(c.h.bit_depth) * size_t(c.h.samples);
  const size_t row_bytes = (size_t(c.h.width) * bits_per_pixel + 7) / 8;
  std::vector<uint8_t> raw = inflate_rows(bytes, c, row_bytes, source);
  unfilter(raw.data(), c.h.height, row_bytes, bits_per_pixel >= 8 ? bits_per_pixel / 8 : 1, source);
  return expand_samples(raw, c, row_bytes, source);
}

}  // namespace ddpm

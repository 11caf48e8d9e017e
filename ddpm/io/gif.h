// gif.h: a minimal animated-GIF writer (GIF89a) for grayscale frames, no library.
//
// Layout (GIF89a specification, https://www.w3.org/Graphics/GIF/spec-gif89a.txt):
//   "GIF89a"                                     header (section 17)
//   logical screen descriptor                    width, height (u16 little-endian), packed 0xF7:
//                                                global color table of 256 entries (section 18)
//   global color table                           256 RGB triples, entry k = (k, k, k): gray
//   application extension "NETSCAPE2.0"          loop count (0 = forever)
//   per frame: graphic control extension         delay in 1/100 s, disposal 1 ("leave in place")
//              image descriptor                  the full screen, no local table (section 20)
//              table-based image data            LZW minimum code size 8, then the LZW codes
//                                                in sub-blocks of at most 255 bytes, then 0
//   0x3B                                         trailer
//
// LZW as GIF uses it (section 22, appendix F): codes are 9..12 bits wide, packed least
// significant bit first; code 256 clears the table, 257 ends the data; the width grows
// when the next code the decoder will add no longer fits; we emit a clear code when the
// table reaches 4096 entries. lzw_decode is the inverse, for the tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// The LZW code stream (packed bytes, before sub-blocking) of 8-bit pixels.
std::vector<uint8_t> gif_lzw_encode(const uint8_t* pixels, size_t size);
// The inverse of gif_lzw_encode (any valid 8-bit GIF LZW stream). Throws ddpm::Error on a
// malformed stream.
std::vector<uint8_t> gif_lzw_decode(const uint8_t* codes, size_t size);

// frames: each width * height gray bytes; delays_cs: one delay per frame in 1/100 s.
std::vector<uint8_t> encode_gif(int64_t width, int64_t height, const std::vector<std::vector<uint8_t>>& frames,
                                const std::vector<int>& delays_cs, int loop_count = 0);
// Written atomically (write_file_atomic), as the PNG and SVG writers are.
void write_gif(const std::string& path, int64_t width, int64_t height,
               const std::vector<std::vector<uint8_t>>& frames, const std::vector<int>& delays_cs,
               int loop_count = 0);

}  // namespace ddpm

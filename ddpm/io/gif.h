// gif.h: a minimal animated-GIF writer (GIF89a) for gray or RGB frames, no library.
//
// Layout (GIF89a specification, https://www.w3.org/Graphics/GIF/spec-gif89a.txt):
//   "GIF89a"                                     header (section 17)
//   logical screen descriptor                    width, height (u16 little-endian), packed 0xF7:
//                                                global color table of 256 entries (section 18)
//   global color table                           256 RGB triples: gray, entry k = (k, k, k);
//                                                or the 6x6x6 color cube, entry 36 r + 6 g + b =
//                                                (51 r, 51 g, 51 b) for r, g, b in 0..5, and
//                                                entries 216..255 unused (black)
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

// The global color table: gray levels, or the 6x6x6 color cube for RGB frames (a fixed
// palette: every frame of a chain maps the same way, and each channel is off by at most 25
// of 255).
enum class GifPalette { gray, cube };

// The cube entry nearest to (r, g, b): each channel rounded to the nearest multiple of 51.
uint8_t gif_cube_index(uint8_t r, uint8_t g, uint8_t b);
// `pixels` RGB pixels (r, g, b interleaved) as cube indices, a frame for GifPalette::cube.
std::vector<uint8_t> gif_cube_frame(const uint8_t* rgb, size_t pixels);

// frames: each width * height palette indices (gray bytes for GifPalette::gray); delays_cs:
// one delay per frame in 1/100 s.
std::vector<uint8_t> encode_gif(int64_t width, int64_t height, const std::vector<std::vector<uint8_t>>& frames,
                                const std::vector<int>& delays_cs, int loop_count = 0,
                                GifPalette palette = GifPalette::gray);
// Written atomically (write_file_atomic), as the PNG and SVG writers are.
void write_gif(const std::string& path, int64_t width, int64_t height,
               const std::vector<std::vector<uint8_t>>& frames, const std::vector<int>& delays_cs,
               int loop_count = 0, GifPalette palette = GifPalette::gray);

}  // namespace ddpm

// pnm.h: binary PGM (P5, gray) and PPM (P6, RGB), the netpbm formats.
//
// A header of ASCII tokens, "P5" or "P6", width, height and maxval, separated by
// whitespace and '#' comments (to the end of the line), then exactly one whitespace
// byte, then width * height * (1 or 3) samples of one byte each, row by row. maxval
// 255 is read as is; maxval 1..254 is scaled to 0..255 as round(v * 255 / maxval).
// Only the first image of the file is read (netpbm allows several, back to back).
//
// Refused, each with an error naming the file: another magic (the ASCII P2/P3 and the
// bitmaps P1/P4 included), a header token that is not a number or runs past the end,
// a side of 0 or above kImageMaxSide (png.h), more than kImageMaxBytes of pixels,
// maxval 0 or above 255 (16-bit samples: convert to 8 bits), fewer sample bytes than
// the header announces (truncated), and a sample above maxval.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ddpm/io/png.h"

namespace ddpm {

// 1 channel (P5) or 3 (P6) of 8 bits. `source` names the file in errors.
Image decode_pnm(const uint8_t* bytes, size_t size, const std::string& source);

}  // namespace ddpm

// image_file.h: one image from a file, whatever its format (PNG, binary PGM or PPM).
//
// read_image(path)
//     The file is opened with InputFile (a folder, device or pipe is refused before any
//     read), its real size checked against kImageMaxFileBytes, then read whole and
//     decoded by the format its first bytes name: the PNG signature (decode_png, png.h)
//     or "P5" / "P6" (decode_pnm, pnm.h). Anything else is refused with an error that
//     names the file and, for JPEG, GIF, BMP and WebP, the format it is.
// decode_image(bytes, size, source)
//     The same on bytes already in memory; `source` names them in errors.
//
// The result has 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels of 8 bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ddpm/io/png.h"

namespace ddpm {

// The largest image file read: kImageMaxBytes of pixels plus room for a PNG whose data
// did not compress (stored deflate blocks add 5 bytes per 65535) and its other chunks.
constexpr uint64_t kImageMaxFileBytes = kImageMaxBytes + (uint64_t(64) << 20);

Image decode_image(const uint8_t* bytes, size_t size, const std::string& source);
Image read_image(const std::string& path);

}  // namespace ddpm

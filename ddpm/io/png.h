// png.h: a PNG writer that needs no zlib, a PNG reader with its own inflate, and image
// grids from tensors.
//
// The PNG is 8 bits per channel, gray (1 channel), RGB (3) or RGBA (4), not
// interlaced, filter type 0 ("None") on every row. Its zlib stream holds stored
// (uncompressed) deflate blocks of at most 65535 bytes (RFC 1951, section 3.2.4),
// followed by the Adler-32 of the raw rows (RFC 1950); each chunk ends with the CRC-32
// of its type and data (PNG spec, section 5.3). Files are a few percent larger than
// the raw pixels, which is fine for sample grids.
//
// The reader, decode_png (png_read.cpp), takes what PNG encoders write for 8-bit
// images: color types gray, gray+alpha, RGB, RGBA and palette (PLTE), at bit depth 8,
// and gray and palette also at 1, 2 and 4 bits; non-interlaced; every filter type (PNG
// spec, section 9). It returns 1 (gray), 2 (gray+alpha), 3 (RGB; palette images too) or
// 4 (RGBA) channels of 8 bits; a low bit depth is scaled to 0..255 (gray: v * 255 /
// (2^depth - 1)). Ancillary chunks (tRNS, gAMA, tEXt, ...) are skipped, so a palette's
// transparency is ignored. It refuses, each with an error naming the file (and the
// chunk, row or byte): a bad signature; a chunk whose length runs past the end of the
// file; a bad CRC on any chunk; IHDR missing, not first, or out of bounds (a side of 0
// or above kImageMaxSide, more than kImageMaxBytes of pixels); 16-bit samples and
// interlacing (each with the fix); an unknown critical chunk; a palette image without
// PLTE, or an index beyond it; IDAT missing or split by other chunks; IEND missing; image
// data that cannot decompress to the size IHDR announces (more than kDeflateMaxRatio
// times the IDAT bytes), that decompresses to less (truncated) or to more (a bomb: inflate
// stops at the announced size), or whose zlib stream is bad (inflate.h); a filter type
// above 4. Bytes after IEND are ignored.
//
// Grids follow torchvision.utils.make_grid + save_image: images [N, C, H, W] in
// [-1, 1] are mapped to [0, 1], then pixel = floor(clamp(v * 255 + 0.5, 0, 255));
// nrow images per row, `padding` pixels of pad_value around and between them
// (NaN maps to 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/tensor.h"

namespace ddpm {

// CRC-32 (polynomial 0xEDB88320, as PNG, zlib and gzip); chain by passing the previous
// value: crc32(b, nb, crc32(a, na)) == crc32(a ++ b).
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);
// Adler-32 (RFC 1950); chain the same way, starting from 1.
uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler = 1);

// pixels: height rows of width * channels bytes, channels interleaved.
std::vector<uint8_t> encode_png(int64_t width, int64_t height, int channels, const uint8_t* pixels);
// write_png and write_image_grid write atomically (write_file_atomic): a failed write
// leaves the previous file or none, never a partial one.
void write_png(const std::string& path, int64_t width, int64_t height, int channels, const uint8_t* pixels);

struct Image {
  int64_t width = 0, height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // [height][width][channels]
};

// Bounds every image reader (PNG, PGM/PPM) checks before it allocates: each side at most
// 16384 pixels, and at most 1 GiB of 8-bit pixels (width * height * channels).
constexpr int64_t kImageMaxSide = 16384;
constexpr uint64_t kImageMaxBytes = uint64_t(1) << 30;

// A PNG file's pixels (the rules above). `source` names the file in errors.
Image decode_png(const uint8_t* bytes, size_t size, const std::string& source);

uint8_t to_pixel(float x);  // [-1, 1] -> 0..255, clamped and rounded; NaN -> 0

// images: [N, C, H, W] with C = 1 or 3.
Image image_grid(const Tensor& images, int64_t nrow = 8, int64_t padding = 2, uint8_t pad_value = 0);
void write_image_grid(const std::string& path, const Tensor& images, int64_t nrow = 8, int64_t padding = 2);

}  // namespace ddpm

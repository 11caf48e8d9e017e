#include "ddpm/io/png.h"

#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"

namespace ddpm {

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  // The table of the byte-at-a-time algorithm: table[b] is the CRC register after
  // shifting byte b through eight rounds of the reflected polynomial.
  static const struct Table {
    uint32_t v[256];
    Table() {
      for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        v[b] = c;
      }
    }
  } table;
  crc = ~crc;
  for (size_t i = 0; i < size; i++) crc = table.v[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler) {
  const uint32_t mod = 65521;  // the largest prime below 2^16
  uint32_t s1 = adler & 0xFFFF, s2 = adler >> 16;
  while (size > 0) {
    // 5552 bytes is the most that can be summed before s2 could overflow 32 bits.
    size_t block = size < 5552 ? size : 5552;
    for (size_t i = 0; i < block; i++) {
      s1 += data[i];
      s2 += s1;
    }
    s1 %= mod;
    s2 %= mod;
    data += block;
    size -= block;
  }
  return (s2 << 16) | s1;
}

static void put_u32_be(std::vector<uint8_t>& out, uint32_t v) {
  for (int k = 3; k >= 0; k--) out.push_back(static_cast<uint8_t>(v >> (8 * k)));
}

// A chunk: length, type, data, CRC-32 of type and data.
static void put_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32_be(out, crc32(out.data() + type_at, 4 + data.size()));
}

std::vector<uint8_t> encode_png(int64_t width, int64_t height, int channels, const uint8_t* pixels) {
  DDPM_CHECK(width >= 1 && height >= 1, "png: image is " << width << "x" << height << "; both sides must be >= 1");
  DDPM_CHECK(channels == 1 || channels == 3 || channels == 4,
             "png: " << channels << " channels; write 1 (gray), 3 (RGB) or 4 (RGBA)");
  const int64_t row_bytes = 1 + width * channels;  // filter byte + pixels
  DDPM_CHECK(width <= (int64_t(1) << 24) && height <= (int64_t(1) << 24) && row_bytes * height <= (int64_t(1) << 30),
             "png: image " << width << "x" << height << "x" << channels << " is too large (over 1 GiB of pixels)");

  // The raw scanlines: each row is its filter type (0, None) and its bytes.
  std::vector<uint8_t> raw;
  raw.reserve(static_cast<size_t>(row_bytes * height));
  for (int64_t y = 0; y < height; y++) {
    raw.push_back(0);
    const uint8_t* row = pixels + y * width * channels;
    raw.insert(raw.end(), row, row + width * channels);
  }

  // zlib stream: CMF 0x78 (deflate, 32K window), FLG 0x01 (no dictionary, fastest;
  // 0x7801 is a multiple of 31 as the check requires), stored blocks, Adler-32.
  std::vector<uint8_t> z = {0x78, 0x01};
  z.reserve(raw.size() + raw.size() / 65535 * 5 + 16);
  size_t pos = 0;
  do {
    size_t len = raw.size() - pos < 65535 ? raw.size() - pos : 65535;
    bool final_block = pos + len == raw.size();
    z.push_back(final_block ? 1 : 0);  // BFINAL, BTYPE = 00 (stored), then padding to the byte
    z.push_back(static_cast<uint8_t>(len & 0xFF));  // LEN, little-endian
    z.push_back(static_cast<uint8_t>(len >> 8));
    z.push_back(static_cast<uint8_t>(~len & 0xFF));  // NLEN = one's complement of LEN
    z.push_back(static_cast<uint8_t>((~len >> 8) & 0xFF));
    z.insert(z.end(), raw.begin() + pos, raw.begin() + pos + len);
    pos += len;
  } while (pos < raw.size());
  put_u32_be(z, adler32(raw.data(), raw.size()));

  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(width));
  put_u32_be(ihdr, static_cast<uint32_t>(height));
  const uint8_t color_type = channels == 1 ? 0 : channels == 3 ? 2 : 6;
  ihdr.insert(ihdr.end(), {8, color_type, 0, 0, 0});  // bit depth, color type, deflate, filter 0, no interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", {});
  return png;
}

void write_png(const std::string& path, int64_t width, int64_t height, int channels, const uint8_t* pixels) {
  write_file_atomic(path, encode_png(width, height, channels, pixels));
}

uint8_t to_pixel(float x) {
  float v = (x + 1.0f) * 0.5f * 255.0f + 0.5f;  // [-1, 1] -> [0, 1] -> [0.5, 255.5]
  if (!(v > 0.0f)) return 0;                      // also NaN
  if (v >= 255.0f) return 255;
  return static_cast<uint8_t>(v);  // truncation of v + 0.5 rounds half up
}

Image image_grid(const Tensor& images, int64_t nrow, int64_t padding, uint8_t pad_value) {
  DDPM_CHECK(images.defined() && images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3) &&
                 images.size(0) >= 1,
             "image_grid: want images [N, C, H, W] with N >= 1 and C = 1 or 3, got "
                 << (images.defined() ? images.shape_str() : "an undefined tensor"));
  DDPM_CHECK(nrow >= 1 && padding >= 0, "image_grid: nrow " << nrow << " must be >= 1 and padding " << padding
                                                            << " >= 0");
  const int64_t N = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t cols = nrow < N ? nrow : N;
  const int64_t rows = (N + cols - 1) / cols;
  Image img;
  img.channels = static_cast<int>(C);
  img.width = cols * (W + padding) + padding;
  img.height = rows * (H + padding) + padding;
  img.pixels.assign(static_cast<size_t>(img.width * img.height * C), pad_value);
  const float* x = images.data();
  for (int64_t n = 0; n < N; n++) {
    const int64_t y0 = (n / cols) * (H + padding) + padding, x0 = (n % cols) * (W + padding) + padding;
    for (int64_t c = 0; c < C; c++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < W; w++)
          img.pixels[((y0 + h) * img.width + (x0 + w)) * C + c] = to_pixel(x[((n * C + c) * H + h) * W + w]);
  }
  return img;
}

void write_image_grid(const std::string& path, const Tensor& images, int64_t nrow, int64_t padding) {
  Image img = image_grid(images, nrow, padding);
  write_png(path, img.width, img.height, img.channels, img.pixels.data());
}

}  // namespace ddpm

// tests/idx_files.h: IDX files (MNIST's format) for tests: known images and labels, written
// to bytes, so a test can build a dataset folder without the real MNIST.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/temp_dir.h"

namespace ddpm {
namespace testing {

inline void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int k = 3; k >= 0; k--) out.push_back(static_cast<uint8_t>(v >> (8 * k)));
}

// N images of H x W with pixel (n, h, w) = (n * 31 + h * 7 + w * 3) % 256, covering 0
// and 255.
inline std::vector<uint8_t> idx_images(uint32_t N, uint32_t H, uint32_t W) {
  std::vector<uint8_t> out;
  put_be32(out, 0x00000803);
  put_be32(out, N), put_be32(out, H), put_be32(out, W);
  for (uint32_t n = 0; n < N; n++)
    for (uint32_t h = 0; h < H; h++)
      for (uint32_t w = 0; w < W; w++) out.push_back(static_cast<uint8_t>((n * 31 + h * 7 + w * 3) % 256));
  return out;
}

inline std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> out;
  put_be32(out, 0x00000801);
  put_be32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// An MNIST split in `dir` as load_mnist finds it: "<prefix>-images-idx3-ubyte" (N images of
// 28 x 28, idx_images) and "<prefix>-labels-idx1-ubyte" (label of image n: n mod 10), where
// prefix is "train" or "t10k" (the test split).
inline void write_mnist_split(const std::string& dir, const std::string& prefix, uint32_t N) {
  std::vector<uint8_t> labels;
  for (uint32_t n = 0; n < N; n++) labels.push_back(static_cast<uint8_t>(n % 10));
  write_bytes(dir + "/" + prefix + "-images-idx3-ubyte", idx_images(N, 28, 28));
  write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte", idx_labels(labels));
}

}  // namespace testing
}  // namespace ddpm

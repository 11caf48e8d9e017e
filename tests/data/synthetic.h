// tests/data/synthetic.h: small files in the exact formats of the datasets, for the
// tests of their readers (no network, no real dataset needed).
#pragma once

#include <cstdint>
#include <vector>

namespace ddpm {
namespace testing {

// The pixel of CIFAR record n, channel c (0 R, 1 G, 2 B), row h, column w in the synthetic
// files: every value 0..255 occurs, and the three planes of a record differ.
inline uint8_t cifar_pixel(int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<uint8_t>((n * 13 + c * 101 + h * 7 + w * 3) % 256);
}

// CIFAR-10 records with the given labels: 1 label byte, then the R, G and B planes of
// 32 x 32 (cifar_pixel of record first + i).
inline std::vector<uint8_t> cifar_records(const std::vector<uint8_t>& labels, int64_t first = 0) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < labels.size(); i++) {
    out.push_back(labels[i]);
    for (int64_t c = 0; c < 3; c++)
      for (int64_t h = 0; h < 32; h++)
        for (int64_t w = 0; w < 32; w++) out.push_back(cifar_pixel(first + int64_t(i), c, h, w));
  }
  return out;
}

}  // namespace testing
}  // namespace ddpm

#include "ddpm/core/rng.h"

#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

// SplitMix64's finalizer: a bijective 64-bit mix with good avalanche.
static inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix64(mix64(mix64(seed) ^ stream) ^ index);
}

uint64_t make_stream(uint64_t purpose, uint64_t a, uint64_t b) { return mix64(mix64(mix64(purpose) ^ a) ^ b); }

double uniform_double(RngKey key, uint64_t index) {
  // 53 random bits, shifted by half an ulp so the result is strictly inside (0, 1).
  uint64_t bits = rng_bits(key.seed, key.stream, index) >> 11;
  return (static_cast<double>(bits) + 0.5) * 0x1.0p-53;
}

float uniform(RngKey key, uint64_t index) {
  uint64_t bits = rng_bits(key.seed, key.stream, index) >> 40;  // 24 bits
  return (static_cast<float>(bits) + 0.5f) * 0x1.0p-24f;
}

float normal(RngKey key, uint64_t index) {
  // Box-Muller: (u1, u2) -> sqrt(-2 ln u1) * (cos(2 pi u2), sin(2 pi u2)).
  uint64_t pair = index >> 1;
  double u1 = uniform_double(key, 2 * pair);
  double u2 = uniform_double(key, 2 * pair + 1);
  double r = std::sqrt(-2.0 * std::log(u1));
  double angle = 2.0 * M_PI * u2;
  return static_cast<float>((index & 1) ? r * std::sin(angle) : r * std::cos(angle));
}

void fill_normal(float* out, int64_t n, RngKey key, uint64_t first_index) {
  for (int64_t i = 0; i < n; i++) out[i] = normal(key, first_index + i);
}

void fill_uniform(float* out, int64_t n, RngKey key, uint64_t first_index) {
  // uniform(key, i) with the key's share of rng_bits (the first two mixes) done once:
  // the same values, one mix per element (dropout draws one per activation).
  const uint64_t key_hash = mix64(mix64(key.seed) ^ key.stream);
  for (int64_t i = 0; i < n; i++) {
    const uint64_t bits = mix64(key_hash ^ (first_index + static_cast<uint64_t>(i))) >> 40;  // 24 bits
    out[i] = (static_cast<float>(bits) + 0.5f) * 0x1.0p-24f;
  }
}

uint64_t Generator::below(uint64_t n) {
  DDPM_CHECK(n > 0 && n <= (uint64_t(1) << 32), "Generator::below: n = " << n << " must be in [1, 2^32]");
  // Lemire's rejection on the top 32 bits.
  uint64_t threshold = ((uint64_t(1) << 32) - n) % n;
  for (;;) {
    uint64_t x = next_bits() >> 32;
    uint64_t m = x * n;
    if ((m & 0xffffffffULL) >= threshold) return m >> 32;
  }
}

}  // namespace ddpm

// rng.h: seeded, counter-based random numbers.
//
// Every random value is a pure function of (seed, stream, index): there is no hidden
// state to advance, so the noise drawn for sample i at training step k is the same
// whatever the batch split or the thread count. `stream` names what the numbers are
// for (see make_stream), `index` is the element's position.
//
//   bits(seed, stream, index)     64 random bits (SplitMix64 finalizer, chained)
//   uniform(key, index)           in (0, 1), never 0 or 1
//   normal(key, index)            N(0, 1) by Box-Muller: indices 2k and 2k+1 share
//                                 one pair of uniforms (cos and sin halves)
//
// Generator is the sequential face of the same thing (seed, stream, counter), for
// parameter initialization and data shuffling; its state is three integers, so a
// checkpoint can store it exactly.
#pragma once

#include <cstdint>

namespace ddpm {

uint64_t rng_bits(uint64_t seed, uint64_t stream, uint64_t index);

struct RngKey {
  uint64_t seed = 0;
  uint64_t stream = 0;
};

// A stream id from a purpose tag and up to two counters (for example the training
// step), so different uses of one seed never overlap.
uint64_t make_stream(uint64_t purpose, uint64_t a = 0, uint64_t b = 0);

double uniform_double(RngKey key, uint64_t index);  // in (0, 1)
float uniform(RngKey key, uint64_t index);          // in (0, 1)
float normal(RngKey key, uint64_t index);           // N(0, 1)
void fill_normal(float* out, int64_t n, RngKey key, uint64_t first_index = 0);
void fill_uniform(float* out, int64_t n, RngKey key, uint64_t first_index = 0);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0) : key_{seed, stream} {}
  float uniform() { return ddpm::uniform(key_, counter_++); }
  float normal() { return ddpm::normal(key_, counter_++); }
  uint64_t next_bits() { return rng_bits(key_.seed, key_.stream, counter_++); }
  // An integer uniform on [0, n), without modulo bias for any n < 2^32.
  uint64_t below(uint64_t n);

  RngKey key() const { return key_; }
  uint64_t counter() const { return counter_; }
  void set_counter(uint64_t c) { counter_ = c; }

 private:
  RngKey key_;
  uint64_t counter_ = 0;
};

}  // namespace ddpm

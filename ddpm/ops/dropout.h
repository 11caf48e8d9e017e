// ops/dropout.h: inverted dropout, seeded.   (PyTorch nn.Dropout in training mode)
//
//   keep[i] = uniform(key, i) >= p;   out[i] = keep[i] ? x[i] * scale : 0,  scale = 1 / (1 - p)
// (scale is rounded to float once and multiplied, as PyTorch does). i is the element's
// index in the flattened x plus `first`, so the mask is a pure function of (key, i): it does
// not depend on the thread count, and a slice of a batch (a micro-batch starting at sample
// s, first = s * elements per sample) draws the masks the whole batch would. Give each layer and training step its own key (see
// make_stream in rng.h), or they will share masks.
// With p == 0 or training == false the op is the identity and returns x itself
// (nothing is recorded). p must be in [0, 1).
// Caches nothing: backward recomputes the mask from the key,
//   dx[i] += keep[i] ? dout[i] * scale : 0.
#pragma once

#include "ddpm/core/rng.h"
#include "ddpm/core/tape.h"

namespace ddpm {

// n elements; p in [0, 1). Backward adds into dx.
void dropout_forward(float* out, const float* x, int64_t n, float p, RngKey key, uint64_t first = 0);
void dropout_backward(float* dx, const float* dout, int64_t n, float p, RngKey key, uint64_t first = 0);

Var dropout(Tape& tape, const Var& x, float p, RngKey key, bool training, uint64_t first = 0);

}  // namespace ddpm

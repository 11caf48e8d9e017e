// ops/pool.h: ReLU and 2x2 max pooling, for the evaluation classifier (a LeNet).
//
//   relu(x)          out = max(x, 0)                       (PyTorch nn.ReLU)
//                    d out / dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch)
//   max_pool2x2(x)   x [N, C, H, W] -> [N, C, H/2, W/2] (H, W even),
//                    out[n, c, y, x] = max over i, j in {0, 1} of in[n, c, 2y + i, 2x + j]
//                    (PyTorch nn.MaxPool2d(2)); backward sends dout to the position of
//                    the max, the first in scan order on ties (as PyTorch does).
// Caches: max_pool2x2's forward stores the argmax position (an offset in 0..3) of each
// output; relu caches nothing beyond its input. The *_ref twins are plain serial loops
// (max_pool2x2_backward_ref recomputes the argmax instead of reading the cache).
#pragma once

#include <cstdint>

#include "ddpm/core/tape.h"

namespace ddpm {

void relu_forward(float* out, const float* x, int64_t n);
void relu_backward(float* dx, const float* dout, const float* x, int64_t n);
template <typename T>  // T = float or double (the gradient checks difference it in double)
void relu_forward_ref(T* out, const T* x, int64_t n);
void relu_backward_ref(float* dx, const float* dout, const float* x, int64_t n);

// NC = N * C planes of H x W (H, W even). argmax: [NC, H/2, W/2] offsets i * 2 + j.
void max_pool2x2_forward(float* out, uint8_t* argmax, const float* x, int64_t NC, int64_t H, int64_t W);
void max_pool2x2_backward(float* dx, const float* dout, const uint8_t* argmax, int64_t NC, int64_t H, int64_t W);
template <typename T>  // T = float or double
void max_pool2x2_forward_ref(T* out, const T* x, int64_t NC, int64_t H, int64_t W);
void max_pool2x2_backward_ref(float* dx, const float* dout, const float* x, int64_t NC, int64_t H, int64_t W);

Var relu(Tape& tape, const Var& x);
Var max_pool2x2(Tape& tape, const Var& x);

}  // namespace ddpm

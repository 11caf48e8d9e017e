// ops/elementwise.h: add, mul, scale, SiLU, sum, mean and the MSE loss.
//
//   add(a, b)       out = a + b; b has a's shape, or b is [N, C] and a is [N, C, H, W]
//                   (b broadcast over H and W: the ResBlock's time-embedding add)
//   mul(a, b)       out = a * b, same shapes
//   scale(a, s)     out = s * a
//   silu(x)         out = x * sigmoid(x)                  (PyTorch nn.SiLU)
//   sum(x), mean(x) out is [1]
//   mse_loss(a, b)  out = mean((a - b)^2), [1]            (PyTorch F.mse_loss, 'mean')
#pragma once

#include "ddpm/core/tape.h"

namespace ddpm {

// Kernels. Backward adds into its gradient outputs.
void silu_forward(float* out, const float* x, int64_t n);
// The same on the calling thread (silu_forward shares n out to the pool; the values are
// the same either way, element by element).
void silu_forward_serial(float* out, const float* x, int64_t n);
void silu_backward(float* dx, const float* dout, const float* x, int64_t n);
// The twin in double; the forward one for T = float and T = double.
template <typename T>
void silu_forward_ref(T* out, const T* x, int64_t n);
void silu_backward_ref(float* dx, const float* dout, const float* x, int64_t n);
// out[n, c, :] = a[n, c, :] + b[n, c] over HW positions.
void add_channel_forward(float* out, const float* a, const float* b, int64_t NC, int64_t HW);
void add_channel_backward(float* db, const float* dout, int64_t NC, int64_t HW);

// Tape ops.
Var add(Tape& tape, const Var& a, const Var& b);
Var mul(Tape& tape, const Var& a, const Var& b);
Var scale(Tape& tape, const Var& a, float s);
Var silu(Tape& tape, const Var& x);
Var sum(Tape& tape, const Var& x);
Var mean(Tape& tape, const Var& x);
Var mse_loss(Tape& tape, const Var& a, const Var& b);

}  // namespace ddpm

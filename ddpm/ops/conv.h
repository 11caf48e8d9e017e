// ops/conv.h: 2-D convolution, NCHW, square kernel, zero padding.   (PyTorch nn.Conv2d)
//
//   out[n, o, y, x] = bias[o] + sum over c, i, j of
//                     weight[o, c, i, j] * in[n, c, y*stride + i - pad, x*stride + j - pad]
//   (a cross-correlation, as in PyTorch: the kernel is not flipped; in[...] outside
//   the image is 0)
//   x: [N, C, H, W], weight: [OC, C, K, K], bias: [OC], out: [N, OC, OH, OW],
//   OH = (H + 2 pad - K) / stride + 1, OW likewise, P = OH * OW.
// The U-Net uses k=3 pad=1 stride 1, k=3 pad=1 stride 2 (Downsample) and k=1 pad=0;
// any K >= 1, stride >= 1 and pad >= 0 work.
//
// Computed as one GEMM per image, images in parallel (cols_n is image n's im2col
// matrix [C*K*K, P]):
//   forward          out_n[OC, P]       = weight[OC, C*K*K] cols_n          (+ bias)
//   backward weight  dweight[OC, C*K*K] += sum over n of dout_n[OC, P] cols_n^T
//   backward data    dx_n += col2im(weight^T dout_n)
//   backward bias    dbias[o]           += sum over n, p of dout[n, o, p]
// cols_n is built only where it must be:
//   - 1x1, stride 1, no padding: cols_n is x_n itself.
//   - stride 1 with pad <= K-1 (every 3x3 conv of the U-Net but Downsample): an
//     implicit GEMM. The zero-padded image, read at K*K shifted offsets, IS cols_n
//     (see ImplicitConv in conv.cpp); backward-data is then the stride-1 convolution
//     of dout with the flipped kernel, the same implicit GEMM.
//   - otherwise (stride 2): an explicit im2col panel per image, and col2im.
// Determinism: every image is computed the same way whichever thread runs it; the sum
// over the batch in dweight runs in a fixed number of partial sums over image blocks
// (conv2d_images_per_block, a function of N only) added in block order, and dbias sums
// images in order. So results do not depend on the thread count.
// Caches nothing beyond its inputs.
#pragma once

#include "ddpm/core/tape.h"

namespace ddpm {

struct Conv2dSize {
  int64_t N, C, H, W;  // input
  int64_t OC, K, stride, pad;
  int64_t OH() const { return (H + 2 * pad - K) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - K) / stride + 1; }
};

// bias may be null. In backward any of dx, dweight, dbias may be null (not wanted);
// the others are added into (+=).
void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s);
void conv2d_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     const Conv2dSize& s);
// Plain seven-deep loops accumulating in double: the oracle for the two above. The forward
// twin is instantiated for T = float and T = double (the gradient checks difference it in double).
template <typename T>
void conv2d_forward_ref(T* out, const T* x, const T* weight, const T* bias, const Conv2dSize& s);
void conv2d_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, const Conv2dSize& s);

// How many images one partial sum of dweight covers (>= 1; at most 8 partials).
// Exposed so tests can make sure they cover the multi-block path.
int64_t conv2d_images_per_block(const Conv2dSize& s);

// bias may be a null Var.
Var conv2d(Tape& tape, const Var& x, const Var& weight, const Var& bias, int64_t stride, int64_t pad);

}  // namespace ddpm

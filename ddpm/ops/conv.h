// ops/conv.h: 2-D convolution, NCHW, square kernel, zero padding.   (PyTorch nn.Conv2d)
//
//   out[n, o, y, x] = bias[o] + sum over c, i, j of
//                     weight[o, c, i, j] * in[n, c, y*stride + i - pad, x*stride + j - pad]
//   x: [N, C, H, W], weight: [OC, C, K, K], bias: [OC], out: [N, OC, OH, OW],
//   OH = (H + 2 pad - K) / stride + 1.
// The U-Net uses k=3 pad=1 stride 1, k=3 pad=1 stride 2 (Downsample) and k=1 pad=0.
// Computed as GEMMs over im2col panels:
//   forward          out_n[OC, OH*OW]    = weight[OC, C*K*K] cols_n[C*K*K, OH*OW]
//   backward data    dcols_n[C*K*K, P]   = weight^T dout_n, then col2im adds into dx
//   backward weight  dweight[OC, C*K*K] += dout_n[OC, P] cols_n^T
// Caches nothing beyond its inputs.
#pragma once

#include "ddpm/tape.h"

namespace ddpm {

struct Conv2dSize {
  int64_t N, C, H, W;  // input
  int64_t OC, K, stride, pad;
  int64_t OH() const { return (H + 2 * pad - K) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - K) / stride + 1; }
};

// bias may be null. In backward any of dx, dweight, dbias may be null (not wanted).
void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s);
void conv2d_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     const Conv2dSize& s);
// Plain seven-deep loops: the oracle for the two above.
void conv2d_forward_ref(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s);
void conv2d_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, const Conv2dSize& s);

// bias may be a null Var.
Var conv2d(Tape& tape, const Var& x, const Var& weight, const Var& bias, int64_t stride, int64_t pad);

}  // namespace ddpm

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
// Computed as GEMMs over im2col panels. The batch is taken in blocks of B images
// (conv2d_images_per_block: a function of the sizes only); a block's panel holds its
// images side by side, cols[C*K*K, B*P], so each GEMM is wide even at small OH*OW:
//   forward          out_t[OC, B*P]      = weight[OC, C*K*K] cols[C*K*K, B*P]
//   backward weight  dweight[OC, C*K*K] += dout_t[OC, B*P] cols^T        (blocks in order)
//   backward data    dcols[C*K*K, B*P]   = weight^T dout_t, then col2im adds into dx
//   backward bias    dbias[o]           += sum over n, p of dout[n, o, p]
// (out_t and dout_t are out and dout with the image and channel axes swapped.)
// Determinism: sgemm is bit-identical for any thread count; im2col, col2im and the
// transposes split over (image, channel) pairs that write disjoint outputs in a fixed
// order; the sums over the batch (dweight, dbias) run in image order. So results do not
// depend on the thread count.
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

// bias may be null. In backward any of dx, dweight, dbias may be null (not wanted);
// the others are added into (+=).
void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s);
void conv2d_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     const Conv2dSize& s);
// Plain seven-deep loops accumulating in double: the oracle for the two above.
void conv2d_forward_ref(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s);
void conv2d_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, const Conv2dSize& s);

// How many images one im2col panel holds (>= 1; the panel is capped at about 4 MB).
// Exposed so tests can make sure they cover the multi-block path.
int64_t conv2d_images_per_block(const Conv2dSize& s);

// bias may be a null Var.
Var conv2d(Tape& tape, const Var& x, const Var& weight, const Var& bias, int64_t stride, int64_t pad);

}  // namespace ddpm

// ops/group_norm.h: GroupNorm with affine parameters.   (PyTorch nn.GroupNorm, eps = 1e-5)
//
//   x: [N, C, H, W] (or [N, C, ...]: HW is the product of the trailing sizes) split
//   into G groups of Cg = C/G channels; per (n, g), over its M = Cg*HW values:
//     mean[n, g] = (1/M) sum x
//     var[n, g]  = (1/M) sum (x - mean)^2        (biased: divide by the count)
//     rstd[n, g] = 1 / sqrt(var + eps)
//     xhat       = (x[n, c, p] - mean[n, g]) * rstd[n, g]
//     out[n, c, p] = xhat * gamma[c] + beta[c]                      gamma, beta: [C]
// Caches mean and rstd, [N, G] each, for backward. The statistics take two passes
// (a first mean, then sums centred at it that refine the mean and give the variance,
// so a large mean does not cancel the variance); the sums run in float vector lanes
// over chunks of 256 values and the chunk sums add in double; mean and rstd are
// rounded to float once.
//
// Backward (one group, dxhat = dout * gamma[c], means over the group's M values):
//   dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//   dgamma[c] = sum over n, p of dout * xhat,   dbeta[c] = sum over n, p of dout
// Threads split the (n, g) pairs; dgamma and dbeta are summed over n afterwards in
// a fixed order, so every result is bit-identical for any thread count.
#pragma once

#include "ddpm/core/tape.h"
#include "ddpm/ops/conv.h"

namespace ddpm {

void group_norm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        int64_t N, int64_t C, int64_t HW, int64_t G, float eps);
// Adds into dx, dgamma, dbeta; any of them may be null (not wanted).
void group_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x, const float* mean,
                         const float* rstd, const float* gamma, int64_t N, int64_t C, int64_t HW, int64_t G);

// Plain-loop twins, everything in double, one thread: the test oracle. The forward twins
// are instantiated for T = float and T = double (the gradient checks difference them in double).
template <typename T>
void group_norm_forward_ref(T* out, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, int64_t N, int64_t C,
                            int64_t HW, int64_t G, float eps);
void group_norm_backward_ref(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                             const float* mean, const float* rstd, const float* gamma, int64_t N, int64_t C,
                             int64_t HW, int64_t G);

// x [N, C, ...] (2 to 4 dims), gamma and beta [C], C divisible by groups, eps > 0.
Var group_norm(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps = 1e-5f);

// ---------------------------------------------------------------------------
// GroupNorm then SiLU, fused: the ResBlock's and the output head's norm-and-activate.
//   y   = xhat * gamma + beta                      (group_norm above)
//   out = y * s,  s = sigmoid(y)                   (silu, ops/elementwise.h)
// It stores only out (with mean and rstd), not y: backward recomputes y from x, so a
// U-Net keeps one activation fewer per norm. Backward:
//   dy = dout * s * (1 + y * (1 - s)),  then group_norm_backward with dy.
// The values are group_norm's and silu's kernels' own, so the result is bit-identical
// to silu(group_norm(x)) on the tape.
void group_norm_silu_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                             const float* beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps);
void group_norm_silu_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                              const float* mean, const float* rstd, const float* gamma, const float* beta, int64_t N,
                              int64_t C, int64_t HW, int64_t G);
// Twins: the two double twins composed (the forward one for T = float and T = double).
template <typename T>
void group_norm_silu_forward_ref(T* out, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, int64_t N,
                                 int64_t C, int64_t HW, int64_t G, float eps);
void group_norm_silu_backward_ref(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                                  const float* mean, const float* rstd, const float* gamma, const float* beta,
                                  int64_t N, int64_t C, int64_t HW, int64_t G);

Var group_norm_silu(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps = 1e-5f);

// Inference: GroupNorm then SiLU straight into the tap planes of the convolution that
// reads it (ops/conv.h, ConvPlanes p of a [C, H, W] image, HW = H * W): the normalized
// activation is never stored as a tensor. planes is [N, C, p.channel_floats()]; mean and
// rstd [N, G] as above. The values are group_norm_silu_forward's, bit for bit (its
// arithmetic, one vector at a time). The input may come in two parts, as the up path's
// concat_channels(x, x_tail) without the copy: channels [0, C_head) from x ([N, C_head, HW])
// and [C_head, C) from x_tail ([N, C - C_head, HW]); a group across the seam is gathered
// first, so the statistics are summed in concat's order.
void group_norm_silu_planes_forward(float* planes, float* mean, float* rstd, const float* x, const float* gamma,
                                    const float* beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps,
                                    const ConvPlanes& p, const float* x_tail = nullptr, int64_t C_head = -1);

}  // namespace ddpm

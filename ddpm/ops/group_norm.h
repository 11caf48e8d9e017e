// ops/group_norm.h: GroupNorm with affine parameters.   (PyTorch nn.GroupNorm, eps = 1e-5)
//
//   x: [N, C, H, W] (or [N, C, ...]: HW is the product of the trailing sizes) split
//   into G groups of Cg = C/G channels; per (n, g), over its M = Cg*HW values:
//     mean[n, g] = (1/M) sum x
//     var[n, g]  = (1/M) sum (x - mean)^2        (biased: divide by the count)
//     rstd[n, g] = 1 / sqrt(var + eps)
//     xhat       = (x[n, c, p] - mean[n, g]) * rstd[n, g]
//     out[n, c, p] = xhat * gamma[c] + beta[c]                      gamma, beta: [C]
// Caches mean and rstd, [N, G] each, for backward. The statistics are computed in
// double, two passes (mean, then the centred sum of squares), so a large mean does
// not cancel the variance; rstd is rounded to float once.
//
// Backward (one group, dxhat = dout * gamma[c], means over the group's M values):
//   dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//   dgamma[c] = sum over n, p of dout * xhat,   dbeta[c] = sum over n, p of dout
// Threads split the (n, g) pairs; dgamma and dbeta are summed over n afterwards in
// a fixed order, so every result is bit-identical for any thread count.
#pragma once

#include "ddpm/tape.h"

namespace ddpm {

void group_norm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        int64_t N, int64_t C, int64_t HW, int64_t G, float eps);
// Adds into dx, dgamma, dbeta; any of them may be null (not wanted).
void group_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x, const float* mean,
                         const float* rstd, const float* gamma, int64_t N, int64_t C, int64_t HW, int64_t G);

// Plain-loop twins, everything in double, one thread: the test oracle.
void group_norm_forward_ref(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                            const float* beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps);
void group_norm_backward_ref(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                             const float* mean, const float* rstd, const float* gamma, int64_t N, int64_t C,
                             int64_t HW, int64_t G);

// x [N, C, ...] (2 to 4 dims), gamma and beta [C], C divisible by groups, eps > 0.
Var group_norm(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps = 1e-5f);

}  // namespace ddpm

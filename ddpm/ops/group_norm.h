// ops/group_norm.h: GroupNorm with affine parameters.   (PyTorch nn.GroupNorm, eps = 1e-5)
//
//   x: [N, C, H, W] split into G groups of C/G channels; per (n, g), over its C/G*H*W
//   values:  mean, var (biased: divide by the count), rstd = 1 / sqrt(var + eps)
//   out[n, c, p] = (x[n, c, p] - mean[n, g]) * rstd[n, g] * gamma[c] + beta[c]
// Caches mean and rstd, [N, G] each, for backward.
#pragma once

#include "ddpm/tape.h"

namespace ddpm {

void group_norm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        int64_t N, int64_t C, int64_t HW, int64_t G, float eps);
// Any of dx, dgamma, dbeta may be null (not wanted).
void group_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x, const float* mean,
                         const float* rstd, const float* gamma, int64_t N, int64_t C, int64_t HW, int64_t G);

Var group_norm(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps = 1e-5f);

}  // namespace ddpm

// ops/shape.h: ops that move values without arithmetic.
//
//   upsample_nearest2x(x)  x [N, C, H, W] -> [N, C, 2H, 2W], out[.., y, x] = in[.., y/2, x/2]
//                          (PyTorch F.interpolate(scale_factor=2, mode="nearest"))
//                          backward: dx[.., y, x] += the sum of its 2x2 block of dout
//   concat_channels(a, b)  a [N, Ca, H, W], b [N, Cb, H, W] -> [N, Ca + Cb, H, W]  (torch.cat dim=1)
//                          backward: da, db += their channel slices of dout
// Nothing is cached. Threads split rows (n, c) or images; each output element is
// written by one thread, so results do not depend on the thread count.
#pragma once

#include "ddpm/core/tape.h"

namespace ddpm {

// NC = N * C planes of H x W inputs (2H x 2W outputs). Backward adds into dx.
void upsample_nearest2x_forward(float* out, const float* x, int64_t NC, int64_t H, int64_t W);
void upsample_nearest2x_backward(float* dx, const float* dout, int64_t NC, int64_t H, int64_t W);

// HW = H * W values per channel. Backward adds into da and db; either may be null.
void concat_channels_forward(float* out, const float* a, const float* b, int64_t N, int64_t Ca, int64_t Cb,
                             int64_t HW);
void concat_channels_backward(float* da, float* db, const float* dout, int64_t N, int64_t Ca, int64_t Cb,
                              int64_t HW);

Var upsample_nearest2x(Tape& tape, const Var& x);  // x: 4-D
Var concat_channels(Tape& tape, const Var& a, const Var& b);  // a, b: 4-D, equal N, H, W

}  // namespace ddpm

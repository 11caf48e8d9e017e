// ops/shape.h: ops that move values without arithmetic.
//
//   upsample_nearest2x(x)  x [N, C, H, W] -> [N, C, 2H, 2W], out[.., y, x] = in[.., y/2, x/2]
//                          (PyTorch F.interpolate(scale_factor=2, mode="nearest"))
//   concat_channels(a, b)  a [N, Ca, H, W], b [N, Cb, H, W] -> [N, Ca + Cb, H, W]  (torch.cat dim=1)
#pragma once

#include "ddpm/tape.h"

namespace ddpm {

void upsample_nearest2x_forward(float* out, const float* x, int64_t NC, int64_t H, int64_t W);
void upsample_nearest2x_backward(float* dx, const float* dout, int64_t NC, int64_t H, int64_t W);

Var upsample_nearest2x(Tape& tape, const Var& x);
Var concat_channels(Tape& tape, const Var& a, const Var& b);

}  // namespace ddpm

// guidance.h: classifier-free guidance (Ho & Salimans 2022).
//
// A conditional U-Net (UNetConfig.num_classes = 10) adds a learned class embedding to the
// time embedding; label num_classes is "null" (no class). Training drops the label to null
// with probability p_uncond (ddpm/train/trainer.cpp, --p-uncond, default 0.1). Sampling mixes the two:
//   eps = (1 + w) eps_theta(x_t, c) - w eps_theta(x_t, null)       (Ho & Salimans, Eq. 6)
// w = 0 is the plain conditional model; larger w trades diversity for agreement with c.
#pragma once

#include "ddpm/core/tensor.h"

namespace ddpm {

// (1 + w) cond - w uncond, elementwise (same shapes). With channels >= 0, cond and uncond are
// [N, C_out, H, W] and only channels [0, channels) are mixed; the others are cond's (the r
// channels of a learned variance, learned_variance.h).
Tensor guided_eps(const Tensor& cond, const Tensor& uncond, double w, int64_t channels = -1);

}  // namespace ddpm

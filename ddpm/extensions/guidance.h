// guidance.h: classifier-free guidance (Ho & Salimans 2022) and the class-conditional grid.
//
// A conditional U-Net (UNetConfig.num_classes = 10) adds a learned class embedding to the
// time embedding; label num_classes is "null" (no class). Training drops the label to null
// with probability p_uncond (train.h, --p-uncond, default 0.1). Sampling mixes the two:
//   eps = (1 + w) eps_theta(x_t, c) - w eps_theta(x_t, null)       (Ho & Salimans, Eq. 6)
// w = 0 is the plain conditional model; larger w trades diversity for agreement with c.
#pragma once

#include <cstdint>
#include <vector>

#include "ddpm/extensions/ddim.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/app/figures.h"  // class_grid_labels: one row per class
#include "ddpm/model/unet.h"

namespace ddpm {

// (1 + w) cond - w uncond, elementwise (same shapes).
Tensor guided_eps(const Tensor& cond, const Tensor& uncond, double w);

struct ClassGridOptions {
  int64_t per_row = 8;                              // images per digit
  double guidance = 0.0;                            // w
  uint64_t seed = 0;                                // the same seed for every w: same x_T
  PredictionTarget predict = PredictionTarget::eps; // what the checkpoint's model predicts
  bool ddim = false;                                // DDIM (ddim_options) instead of Algorithm 2
  DdimOptions ddim_options;
  ReverseOptions reverse;                           // Algorithm 2's variance and clipping
};
// Samples [num_classes * per_row, C, S, S] from a conditional model, one row per class
// (write it with write_image_grid(path, x, per_row)).
Tensor sample_class_grid(UNet& model, const Schedule& s, const ClassGridOptions& options);

}  // namespace ddpm

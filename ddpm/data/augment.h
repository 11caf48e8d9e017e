// augment.h: random horizontal flips, the one augmentation of Ho et al. 2020 ("we used
// random horizontal flips during training for CIFAR10", Appendix B).
//
// Pure functions of a key, as everything random here (ddpm/core/rng.h): image i of a
// batch is flipped when uniform(key, i) < 0.5, so a batch flips the same way at any
// thread count and after a resume. A trainer passes a key of its own per step, e.g.
// RngKey{seed, make_stream(<its hflip purpose tag>, step)}, and calls random_hflip on
// the batch x0 before q_sample (Algorithm 1, line 2: x0 ~ q(x0), augmented).
#pragma once

#include <cstdint>

#include "ddpm/core/rng.h"
#include "ddpm/core/tensor.h"

namespace ddpm {

// Whether image `index` of the batch keyed by `key` is flipped: uniform(key, index) < 0.5.
bool hflip_chosen(RngKey key, uint64_t index);

// Mirrors one image [C, H, W] left to right in place: x[c][h][w] <-> x[c][h][W-1-w].
void hflip_image(float* x, int64_t C, int64_t H, int64_t W);

// Flips image n of images [N, C, H, W] in place when hflip_chosen(key, n).
void random_hflip(Tensor& images, RngKey key);

}  // namespace ddpm

#include "ddpm/data/augment.h"

#include <utility>

#include "ddpm/core/check.h"

namespace ddpm {

bool hflip_chosen(RngKey key, uint64_t index) { return uniform(key, index) < 0.5f; }

void hflip_image(float* x, int64_t C, int64_t H, int64_t W) {
  for (int64_t row = 0; row < C * H; row++) {
    float* r = x + row * W;
    for (int64_t w = 0; w < W / 2; w++) std::swap(r[w], r[W - 1 - w]);
  }
}

void random_hflip(Tensor& images, RngKey key) {
  DDPM_CHECK(images.defined() && images.dim() == 4,
             "random_hflip: want images [N, C, H, W], got " << (images.defined() ? images.shape_str() : "an undefined tensor"));
  const int64_t N = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  for (int64_t n = 0; n < N; n++)
    if (hflip_chosen(key, static_cast<uint64_t>(n))) hflip_image(images.data() + n * C * H * W, C, H, W);
}

}  // namespace ddpm

#include "ddpm/extensions/guidance.h"

#include "ddpm/core/check.h"

namespace ddpm {

Tensor guided_eps(const Tensor& cond, const Tensor& uncond, double w, int64_t channels) {
  DDPM_CHECK(cond.defined() && uncond.defined() && cond.shape() == uncond.shape(),
             "guided_eps: eps(x, c) " << cond.shape_str() << " and eps(x, null) " << uncond.shape_str()
                                      << " must have the same shape");
  DDPM_CHECK(channels < 0 || (cond.dim() == 4 && channels <= cond.size(1)),
             "guided_eps: " << channels << " guided channels of " << cond.shape_str());
  const float wf = static_cast<float>(w);
  Tensor out = cond.clone();
  const int64_t N = cond.size(0), stride = cond.numel() / N;
  const int64_t mixed = channels < 0 ? stride : channels * cond.size(2) * cond.size(3);
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = n * stride; i < n * stride + mixed; i++) {
      // eps = (1 + w) eps(x, c) - w eps(x, null)   (Ho & Salimans 2022, Eq. 6)
      out[i] = (1.0f + wf) * cond[i] - wf * uncond[i];
    }
  return out;
}

}  // namespace ddpm

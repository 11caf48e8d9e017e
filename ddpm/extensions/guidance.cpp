#include "ddpm/extensions/guidance.h"

#include "ddpm/core/check.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/train/trainer.h"

namespace ddpm {

Tensor guided_eps(const Tensor& cond, const Tensor& uncond, double w) {
  DDPM_CHECK(cond.defined() && uncond.defined() && cond.shape() == uncond.shape(),
             "guided_eps: eps(x, c) " << cond.shape_str() << " and eps(x, null) " << uncond.shape_str()
                                      << " must have the same shape");
  const float wf = static_cast<float>(w);
  Tensor out(cond.shape());
  // eps = (1 + w) eps(x, c) - w eps(x, null)   (Ho & Salimans 2022, Eq. 6)
  for (int64_t i = 0; i < out.numel(); i++) out[i] = (1.0f + wf) * cond[i] - wf * uncond[i];
  return out;
}

Tensor sample_class_grid(UNet& model, const Schedule& s, const ClassGridOptions& options) {
  const UNetConfig& c = model.config();
  DDPM_CHECK(c.num_classes > 0, "sample_class_grid: model '" << c.name << "' is not class-conditional "
                                                             << "(train it with --conditional)");
  const std::vector<int64_t> labels = class_grid_labels(c.num_classes, options.per_row);
  EpsFn eps = as_eps_fn(s, unet_eps_fn(model, &labels, options.guidance), options.predict);
  const Shape shape{static_cast<int64_t>(labels.size()), c.in_ch, c.image_size, c.image_size};
  if (options.ddim) return ddim_sample(s, eps, shape, options.seed, options.ddim_options).x0;
  SampleOptions so;
  so.reverse = options.reverse;
  return sample(s, eps, shape, options.seed, so).x0;
}

}  // namespace ddpm

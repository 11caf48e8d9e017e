// prediction_targets.h: what the network predicts. eps (the default, Ho et al. 2020), x_0, or the
// velocity v (Salimans & Ho 2022, "Progressive Distillation", Sec. 4 and Appendix D), and
// the conversions among them given x_t and t. An option: the default stays eps.
//
// With a = sqrt(alpha-bar_t), b = sqrt(1 - alpha-bar_t) (a^2 + b^2 = 1) and
// x_t = a x_0 + b eps (the forward process, Ho et al. Eq. 4):
//   v    = a eps - b x_0                (Salimans & Ho, Sec. 4: v = alpha eps - sigma x)
//   x_0  = (x_t - b eps) / a            (Ho et al. Eq. 15)
//   eps  = (x_t - a x_0) / b
//   x_0  = a x_t - b v                  (Salimans & Ho, Appendix D)
//   eps  = b x_t + a v
// The sampler always works in eps: as_eps_fn wraps a model that predicts x_0 or v. The
// conversion to eps is affine in the prediction with coefficients that sum to one across
// two predictions, so guidance ((1 + w) f_c - w f_null) commutes with it.
//
// Training (Algorithm 1 with the target swapped): the loss is the MSE between the model's
// output and the chosen target: || eps - out ||^2, || x_0 - out ||^2 or || v - out ||^2,
// unweighted (as diffusers' prediction_type does; no SNR weighting).
#pragma once

#include <string>
#include <vector>

#include "ddpm/diffusion/diffusion.h"

namespace ddpm {

enum class PredictionTarget { eps, x0, v };
const char* target_name(PredictionTarget p);             // "eps", "x0", "v"
PredictionTarget parse_target(const std::string& s);      // throws on an unknown name

// Each is [N, C, H, W] (any rank >= 1, dim 0 the batch), with one t per sample.
Tensor eps_from_x0(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& x0);
Tensor v_from_eps_x0(const Schedule& s, const std::vector<int64_t>& t, const Tensor& eps, const Tensor& x0);
Tensor x0_from_v(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& v);
Tensor eps_from_v(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& v);
// (x_0 from eps is diffusion.h's predict_x0_from_eps.)

// The regression target of `target` for x_0 and eps (x_t = q_sample(x0, t, eps)).
Tensor training_target(PredictionTarget target, const Schedule& s, const Tensor& x0, const Tensor& eps,
                       const std::vector<int64_t>& t);
// eps implied by the model's output `prediction` of `target` at (x_t, t).
Tensor eps_from_prediction(PredictionTarget target, const Schedule& s, const Tensor& x_t,
                           const std::vector<int64_t>& t, const Tensor& prediction);
// A model that predicts `target`, seen as an eps-predictor: its output converted by
// eps_from_prediction. For eps it is `model` itself. The schedule must outlive it.
EpsFn as_eps_fn(const Schedule& s, EpsFn model, PredictionTarget target);

}  // namespace ddpm

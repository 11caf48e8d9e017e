#include "ddpm/extensions/ddim.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

const char* spacing_name(Spacing s) { return s == Spacing::linspace ? "linspace" : "trailing"; }

Spacing parse_spacing(const std::string& s) {
  if (s == "linspace") return Spacing::linspace;
  if (s == "trailing") return Spacing::trailing;
  DDPM_FAIL("parse_spacing: unknown spacing '" << s << "'; use linspace (both ends, 1 and T) or trailing (ends at T)");
}

std::vector<int64_t> respace_timesteps(int64_t T, int64_t S, Spacing spacing) {
  DDPM_CHECK(T >= 1 && S >= 1 && S <= T,
             "respace_timesteps: " << S << " steps of T = " << T << "; the number of steps must be in 1..T");
  std::vector<int64_t> tau(S);
  if (spacing == Spacing::linspace) {
    if (S == 1) return {T};
    // tau_k = 1 + round((k - 1) (T - 1) / (S - 1)): numpy.linspace(0, T - 1, S).round(), 1-based
    const double step = static_cast<double>(T - 1) / static_cast<double>(S - 1);
    for (int64_t k = 0; k < S; k++) tau[k] = 1 + static_cast<int64_t>(std::nearbyint(k * step));
    tau[S - 1] = T;  // numpy.linspace sets the endpoint exactly
  } else {
    // tau_{S-j} = round(T - j T / S): numpy.round(numpy.arange(T, 0, -T / S)) - 1, 1-based
    const double step = static_cast<double>(T) / static_cast<double>(S);
    for (int64_t j = 0; j < S; j++) tau[S - 1 - j] = static_cast<int64_t>(std::nearbyint(T - j * step));
  }
  for (int64_t k = 0; k < S; k++)
    DDPM_CHECK(tau[k] >= 1 && tau[k] <= T && (k == 0 || tau[k] > tau[k - 1]),
               "respace_timesteps: internal error at k = " << k << " (T = " << T << ", S = " << S << ")");
  return tau;
}

double ddim_sigma2(const Schedule& sch, int64_t t, int64_t s, double eta) {
  sch.check_t(t, "ddim_sigma2");
  DDPM_CHECK(s >= 0 && s < t, "ddim_sigma2: step from t = " << t << " to s = " << s << " needs 0 <= s < t");
  const double ab_t = sch.alpha_bar[t], ab_s = sch.alpha_bar[s];
  // sigma_ts = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)   (Song et al. Eq. 16)
  return eta * eta * (1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s);
}

Tensor ddim_step(const Schedule& sch, const Tensor& x_t, int64_t t, int64_t s, const Tensor& eps, double eta,
                 const Tensor& z, bool clip_x0) {
  DDPM_CHECK(eta >= 0, "ddim_step: eta = " << eta << " must be non-negative");
  const double sigma2 = ddim_sigma2(sch, t, s, eta);
  DDPM_CHECK(x_t.defined() && eps.defined() && x_t.shape() == eps.shape(),
             "ddim_step: x_t " << x_t.shape_str() << " and eps " << (eps.defined() ? eps.shape_str() : "(undefined)")
                               << " must have the same shape");
  const bool noise = sigma2 > 0;
  DDPM_CHECK(!noise || (z.defined() && z.shape() == x_t.shape()),
             "ddim_step: eta = " << eta << " > 0 needs z of shape " << x_t.shape_str());
  const double ab_t = sch.alpha_bar[t], ab_s = sch.alpha_bar[s];
  const float inv_sqrt_ab_t = static_cast<float>(1.0 / std::sqrt(ab_t));
  const float sqrt_one_minus_ab_t = static_cast<float>(std::sqrt(1.0 - ab_t));
  const float sqrt_ab_s = static_cast<float>(std::sqrt(ab_s));
  // The direction pointing to x_t: sqrt(1 - ab_s - sigma^2) (clamped at 0 against rounding).
  const float dir_coef = static_cast<float>(std::sqrt(std::max(0.0, 1.0 - ab_s - sigma2)));
  const float sigma = static_cast<float>(std::sqrt(sigma2));
  Tensor x_s(x_t.shape());
  for (int64_t j = 0; j < x_t.numel(); j++) {
    // pred_x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)   (Song et al. Eq. 12, "predicted x_0")
    float pred_x0 = (x_t[j] - sqrt_one_minus_ab_t * eps[j]) * inv_sqrt_ab_t;
    if (clip_x0) pred_x0 = std::min(1.0f, std::max(-1.0f, pred_x0));
    // x_s = sqrt(ab_s) pred_x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z   (Song et al. Eq. 12)
    x_s[j] = sqrt_ab_s * pred_x0 + dir_coef * eps[j] + (noise ? sigma * z[j] : 0.0f);
  }
  return x_s;
}

SampleResult ddim_sample(const Schedule& sch, const EpsFn& model, const Shape& shape, uint64_t seed,
                         const DdimOptions& options) {
  DDPM_CHECK(shape.size() >= 1 && shape[0] >= 1 && numel_of(shape) > 0,
             "ddim_sample: shape " << to_string(shape) << " must be [N, C, H, W] with N >= 1 and no zero sizes");
  DDPM_CHECK(options.eta >= 0, "ddim_sample: eta = " << options.eta << " must be non-negative");
  const std::vector<int64_t> tau = respace_timesteps(sch.T, options.steps, options.spacing);
  for (int64_t k : options.keep_t)
    DDPM_CHECK(k == 0 || std::find(tau.begin(), tau.end(), k) != tau.end(),
               "ddim_sample: keep_t = " << k << " is not 0 or a step of the respaced sequence");
  const int64_t N = shape[0];
  SampleResult r;
  // x_T ~ N(0, I), the same draw as Algorithm 2 line 1 (tau_S = T).
  Tensor x = keyed_normal(shape, RngKey{seed, make_stream(rng_sample_xT)}, options.first_index);
  r.keep_if_asked(sch.T, x, options.keep_t);
  for (int64_t k = static_cast<int64_t>(tau.size()) - 1; k >= 0; k--) {
    const int64_t t = tau[k], s = k > 0 ? tau[k - 1] : 0;
    const std::vector<int64_t> tv(N, t);
    const Tensor eps = model(x, tv);
    Tensor z = ddim_sigma2(sch, t, s, options.eta) > 0
                   ? keyed_normal(shape, RngKey{seed, make_stream(rng_ddim_z, t)}, options.first_index)
                   : Tensor();
    x = ddim_step(sch, x, t, s, eps, options.eta, z, options.clip_x0);
    r.keep_if_asked(s, x, options.keep_t);
  }
  r.x0 = x;
  return r;
}

Tensor ddim_encode(const Schedule& sch, const EpsFn& model, const Tensor& x0, const std::vector<int64_t>& tau) {
  DDPM_CHECK(x0.defined() && x0.dim() >= 1 && x0.size(0) >= 1, "ddim_encode: x0 needs a batch dimension");
  const int64_t N = x0.size(0);
  Tensor x = x0.clone();
  int64_t s = 0;
  for (int64_t t : tau) {
    sch.check_t(t, "ddim_encode");
    DDPM_CHECK(t > s, "ddim_encode: tau must be strictly ascending (" << s << " then " << t << ")");
    const Tensor eps = model(x, std::vector<int64_t>(N, t));  // eps_theta(x_s, t), see ddim.h
    const float inv_sqrt_ab_s = static_cast<float>(1.0 / std::sqrt(sch.alpha_bar[s]));
    const float sqrt_one_minus_ab_s = static_cast<float>(std::sqrt(1.0 - sch.alpha_bar[s]));
    const float sqrt_ab_t = static_cast<float>(std::sqrt(sch.alpha_bar[t]));
    const float sqrt_one_minus_ab_t = static_cast<float>(std::sqrt(1.0 - sch.alpha_bar[t]));
    Tensor next(x.shape());
    for (int64_t j = 0; j < x.numel(); j++) {
      // pred_x0 = (x_s - sqrt(1 - ab_s) eps) / sqrt(ab_s); x_t = sqrt(ab_t) pred_x0 + sqrt(1 - ab_t) eps
      const float pred_x0 = (x[j] - sqrt_one_minus_ab_s * eps[j]) * inv_sqrt_ab_s;
      next[j] = sqrt_ab_t * pred_x0 + sqrt_one_minus_ab_t * eps[j];
    }
    x = next;
    s = t;
  }
  return x;
}

Tensor ddim_decode(const Schedule& sch, const EpsFn& model, const Tensor& x_T, const std::vector<int64_t>& tau) {
  DDPM_CHECK(x_T.defined() && x_T.dim() >= 1 && x_T.size(0) >= 1, "ddim_decode: x_T needs a batch dimension");
  const int64_t N = x_T.size(0);
  Tensor x = x_T.clone();
  for (int64_t k = static_cast<int64_t>(tau.size()) - 1; k >= 0; k--) {
    const int64_t t = tau[k], s = k > 0 ? tau[k - 1] : 0;
    DDPM_CHECK(t > s, "ddim_decode: tau must be strictly ascending (" << s << " then " << t << ")");
    x = ddim_step(sch, x, t, s, model(x, std::vector<int64_t>(N, t)), 0.0, Tensor());
  }
  return x;
}

}  // namespace ddpm

#include "ddpm/extensions/prediction_targets.h"

#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

const char* target_name(PredictionTarget p) {
  switch (p) {
    case PredictionTarget::eps: return "eps";
    case PredictionTarget::x0: return "x0";
    case PredictionTarget::v: return "v";
  }
  return "?";
}

PredictionTarget parse_target(const std::string& s) {
  if (s == "eps" || s == "epsilon") return PredictionTarget::eps;
  if (s == "x0" || s == "sample") return PredictionTarget::x0;
  if (s == "v" || s == "v_prediction") return PredictionTarget::v;
  DDPM_FAIL("parse_target: unknown prediction target '" << s << "'; use eps (the noise, the default), x0 (the "
                                                           "clean image) or v (sqrt(ab) eps - sqrt(1 - ab) x0)");
}

// out[i, j] = c1(t_i) x[i, j] + c2(t_i) y[i, j], the coefficients in double, rounded once.
static Tensor combine(const char* op, const Schedule& s, const std::vector<int64_t>& t, double (*c1)(const Schedule&, int64_t),
                      const Tensor& x, double (*c2)(const Schedule&, int64_t), const Tensor& y) {
  check_timesteps(s, x, t, op);
  std::vector<float> a(t.size()), b(t.size());
  for (size_t i = 0; i < t.size(); i++) {
    a[i] = static_cast<float>(c1(s, t[i]));
    b[i] = static_cast<float>(c2(s, t[i]));
  }
  return per_sample_axpby(a, x, b, y);
}

static double a_of(const Schedule& s, int64_t t) { return s.sqrt_alpha_bar[t]; }           // a = sqrt(ab)
static double b_of(const Schedule& s, int64_t t) { return s.sqrt_one_minus_alpha_bar[t]; }  // b = sqrt(1 - ab)
static double minus_b(const Schedule& s, int64_t t) { return -b_of(s, t); }
static double inv_b(const Schedule& s, int64_t t) { return 1.0 / b_of(s, t); }
static double minus_a_over_b(const Schedule& s, int64_t t) { return -a_of(s, t) / b_of(s, t); }

Tensor eps_from_x0(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& x0) {
  // eps = (x_t - a x_0) / b
  return combine("eps_from_x0", s, t, inv_b, x_t, minus_a_over_b, x0);
}

Tensor v_from_eps_x0(const Schedule& s, const std::vector<int64_t>& t, const Tensor& eps, const Tensor& x0) {
  // v = a eps - b x_0   (Salimans & Ho 2022, Sec. 4)
  return combine("v_from_eps_x0", s, t, a_of, eps, minus_b, x0);
}

Tensor x0_from_v(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& v) {
  // x_0 = a x_t - b v   (Salimans & Ho 2022, Appendix D)
  return combine("x0_from_v", s, t, a_of, x_t, minus_b, v);
}

Tensor eps_from_v(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& v) {
  // eps = b x_t + a v
  return combine("eps_from_v", s, t, b_of, x_t, a_of, v);
}

Tensor training_target(PredictionTarget target, const Schedule& s, const Tensor& x0, const Tensor& eps,
                       const std::vector<int64_t>& t) {
  switch (target) {
    case PredictionTarget::eps: return eps;
    case PredictionTarget::x0: return x0;
    case PredictionTarget::v: return v_from_eps_x0(s, t, eps, x0);
  }
  DDPM_FAIL("training_target: bad target");
}

Tensor eps_from_prediction(PredictionTarget target, const Schedule& s, const Tensor& x_t,
                           const std::vector<int64_t>& t, const Tensor& prediction) {
  switch (target) {
    case PredictionTarget::eps: return prediction;
    case PredictionTarget::x0: return eps_from_x0(s, x_t, t, prediction);
    case PredictionTarget::v: return eps_from_v(s, x_t, t, prediction);
  }
  DDPM_FAIL("eps_from_prediction: bad target");
}

EpsFn as_eps_fn(const Schedule& s, EpsFn model, PredictionTarget target) {
  if (target == PredictionTarget::eps) return model;
  return [&s, model, target](const Tensor& x_t, const std::vector<int64_t>& t) {
    return eps_from_prediction(target, s, x_t, t, model(x_t, t));
  };
}

}  // namespace ddpm

// tests/diffusion/testing.h: what the tests of ddpm/diffusion/ share.
//
// Monte Carlo checks use fixed seeds and a band of k = 4 standard errors: a correct
// implementation would fail one with probability about 6e-5 for an arbitrary seed, and any
// wrong coefficient in the formulas moves the estimate by far more than the band.
#pragma once

#include <cmath>
#include <vector>

#include "ddpm/diffusion/diffusion.h"

namespace ddpm {
namespace testing {

inline std::vector<int64_t> all_t(int64_t N, int64_t t) { return std::vector<int64_t>(N, t); }

// The network's eps_theta with the paper's fixed Sigma_theta = sigma_t^2 I.
inline ModelPrediction fixed(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                             const Tensor& eps_theta, VarianceType v = VarianceType::fixed_large) {
  return ModelPrediction{eps_theta, fixed_sigma(s, v, x_t, t)};
}

// Mean and variance of all elements, in double.
inline void moments(const Tensor& x, double& mean, double& var) {
  double s = 0, s2 = 0;
  for (int64_t j = 0; j < x.numel(); j++) s += x[j];
  mean = s / x.numel();
  for (int64_t j = 0; j < x.numel(); j++) s2 += (x[j] - mean) * (x[j] - mean);
  var = s2 / (x.numel() - 1);
}

// log N(x; m, v), in double.
inline double log_normal(double x, double m, double v) {
  return -0.5 * (std::log(2 * M_PI * v) + (x - m) * (x - m) / v);
}

}  // namespace testing
}  // namespace ddpm

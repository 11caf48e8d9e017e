// tests/oracle.h: the optimal eps predictor for Gaussian data, shared by the tests of the
// samplers and the bound (test_diffusion.cpp, test_ddim.cpp, test_default_path.cpp,
// test_prediction_targets.cpp).
//
// For data x_0 ~ N(m, s^2 I) and x_t = a x_0 + b eps with a = sqrt(ab), b = sqrt(1 - ab),
// (eps, x_t) are jointly Gaussian with Cov(eps, x_t) = b and Var(x_t) = a^2 s^2 + b^2, so
//   eps*(x_t, t) = E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab).
#pragma once

#include <cmath>
#include <vector>

#include "ddpm/diffusion/diffusion.h"

namespace ddpm {
namespace testing {

inline EpsFn gaussian_oracle(const Schedule& sch, double m, double s) {
  return [&sch, m, s](const Tensor& x_t, const std::vector<int64_t>& t) {
    Tensor eps(x_t.shape());
    const int64_t D = x_t.numel() / x_t.size(0);
    for (int64_t i = 0; i < x_t.size(0); i++) {
      const double ab = sch.alpha_bar[t[i]];
      for (int64_t j = i * D; j < (i + 1) * D; j++)
        eps[j] = static_cast<float>(std::sqrt(1 - ab) * (x_t[j] - std::sqrt(ab) * m) / (ab * s * s + 1 - ab));
    }
    return eps;
  };
}

// The same oracle as the reverse process's model, with the paper's Sigma = sigma_t^2 I.
inline ModelFn gaussian_oracle_model(const Schedule& sch, double m, double s,
                                     VarianceType v = VarianceType::fixed_large) {
  return fixed_variance_model(sch, gaussian_oracle(sch, m, s), v);
}

}  // namespace testing
}  // namespace ddpm

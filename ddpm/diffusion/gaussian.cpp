#include "ddpm/diffusion/gaussian.h"

#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

static void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* a_name, const char* b_name) {
  DDPM_CHECK(a.defined() && b.defined() && a.shape() == b.shape(),
             op << ": " << a_name << " " << (a.defined() ? a.shape_str() : "(undefined)") << " and " << b_name << " "
                << (b.defined() ? b.shape_str() : "(undefined)") << " must have the same shape");
}

double normal_kl(double mean1, double logvar1, double mean2, double logvar2, double* dlogvar2) {
  // KL(N(m1, v1) || N(m2, v2)) = 1/2 (-1 + log v2 - log v1 + v1 / v2 + (m1 - m2)^2 / v2)
  const double d = mean1 - mean2;
  const double ratio = std::exp(logvar1 - logvar2), d2_over_var2 = d * d * std::exp(-logvar2);
  // d KL / d log v2 = 1/2 (1 - v1 / v2 - (m1 - m2)^2 / v2)
  if (dlogvar2) *dlogvar2 = 0.5 * (1.0 - ratio - d2_over_var2);
  return 0.5 * (-1.0 + logvar2 - logvar1 + ratio + d2_over_var2);
}

Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2) {
  check_same_shape(mean1, logvar1, "normal_kl", "mean1", "logvar1");
  check_same_shape(mean1, mean2, "normal_kl", "mean1", "mean2");
  check_same_shape(mean1, logvar2, "normal_kl", "mean1", "logvar2");
  Tensor out(mean1.shape());
  for (int64_t j = 0; j < out.numel(); j++)
    out[j] = static_cast<float>(normal_kl(mean1[j], logvar1[j], mean2[j], logvar2[j]));
  return out;
}

static const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);

double log_normal_cdf(double z) {
  if (z > -30.0) return std::log(0.5 * std::erfc(-z / std::sqrt(2.0)));
  return -0.5 * z * z - std::log(-z) - kHalfLog2Pi;  // Mills ratio; relative error < 1/z^2 ~ 1e-3
}

static double log_normal_pdf(double z) { return -0.5 * z * z - kHalfLog2Pi; }

double discretized_gaussian_log_prob(double x, double mean, double log_scale, double* dlog_scale) {
  const double inv_scale = std::exp(-log_scale);
  const double half_bin = 1.0 / 255.0;  // 256 levels on [-1, 1]: bins of width 2/255
  const double z_plus = (x - mean + half_bin) * inv_scale, z_minus = (x - mean - half_bin) * inv_scale;
  // p_theta(x_0 | x_1) = prod_i int_{delta_-(x_0^i)}^{delta_+(x_0^i)} N(x; mu_theta^i(x_1, 1), sigma_1^2) dx,
  // delta_+ = inf if x = 1 else x + 1/255, delta_- = -inf if x = -1 else x - 1/255   (Ho et al. Eq. 13)
  // Each branch's derivative uses dz/d log_scale = -z.
  if (x < -0.999) {
    // The bin of -1 reaches -inf: log Phi(z+); d/d ls = -z+ phi(z+) / Phi(z+)
    const double log_p = log_normal_cdf(z_plus);
    if (dlog_scale) *dlog_scale = -z_plus * std::exp(log_normal_pdf(z_plus) - log_p);
    return log_p;
  }
  if (x > 0.999) {
    // The bin of +1 reaches +inf: log (1 - Phi(z-)) = log Phi(-z-); d/d ls = z- phi(z-) / Phi(-z-)
    const double log_p = log_normal_cdf(-z_minus);
    if (dlog_scale) *dlog_scale = z_minus * std::exp(log_normal_pdf(z_minus) - log_p);
    return log_p;
  }
  // P = Phi(z+) - Phi(z-), taken in the tail where it does not cancel;
  // d log P / d ls = (z- phi(z-) - z+ phi(z+)) / P
  const double p = z_minus > 0 ? 0.5 * std::erfc(z_minus / std::sqrt(2.0)) - 0.5 * std::erfc(z_plus / std::sqrt(2.0))
                               : 0.5 * std::erfc(-z_plus / std::sqrt(2.0)) - 0.5 * std::erfc(-z_minus / std::sqrt(2.0));
  if (p > 1e-300) {
    if (dlog_scale)
      *dlog_scale = (z_minus * std::exp(log_normal_pdf(z_minus)) - z_plus * std::exp(log_normal_pdf(z_plus))) / p;
    return std::log(p);
  }
  // Far tail: the density at the centre times the bin width,
  // log P = log(2 h) - ls - log sqrt(2 pi) - z^2 / 2 with z = (x - mean) e^{-ls}; d/d ls = z^2 - 1
  const double z_mid = (x - mean) * inv_scale;
  if (dlog_scale) *dlog_scale = z_mid * z_mid - 1.0;
  return std::log(2.0 * half_bin) - log_scale - kHalfLog2Pi - 0.5 * z_mid * z_mid;
}

Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales) {
  check_same_shape(x, means, "discretized_gaussian_log_likelihood", "x", "means");
  check_same_shape(x, log_scales, "discretized_gaussian_log_likelihood", "x", "log_scales");
  Tensor out(x.shape());
  for (int64_t j = 0; j < x.numel(); j++)
    out[j] = static_cast<float>(discretized_gaussian_log_prob(x[j], means[j], log_scales[j]));
  return out;
}

}  // namespace ddpm

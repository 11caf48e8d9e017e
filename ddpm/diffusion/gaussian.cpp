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
  // Upper side: log Phi(z) = log(1 - Q(z)), Q(z) = Phi(-z) = erfc(z / sqrt 2) / 2; log1p keeps -Q(z)
  // when 1 - Q(z) rounds to 1 (from z ~ 8.3 on).
  if (z > 0.0) return std::log1p(-0.5 * std::erfc(z / std::sqrt(2.0)));
  if (z > -30.0) return std::log(0.5 * std::erfc(-z / std::sqrt(2.0)));
  // Far lower tail, where erfc underflows (from z ~ -37.5): the asymptotic series of the Mills
  // ratio (Abramowitz & Stegun 26.2.12), with r = 1 / z^2,
  //   Phi(z) = phi(z) / (-z) (1 - r + 3 r^2 - 15 r^3 + 105 r^4 - 945 r^5 + ...);
  // at z <= -30 the first term left out, 10395 r^6, is below 2e-14.
  const double r = 1.0 / (z * z);
  const double series = -r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r * (1.0 - 9.0 * r))));  // the sum minus 1
  return -0.5 * z * z - std::log(-z) - kHalfLog2Pi + std::log1p(series);
}

static double log_normal_pdf(double z) { return -0.5 * z * z - kHalfLog2Pi; }

// log(exp(a) - exp(b)) for a > b, without forming exp(a) (which may underflow).
static double log_diff_exp(double a, double b) { return a + std::log(-std::expm1(b - a)); }

double discretized_gaussian_log_prob(double x, double mean, double log_scale, double* dlog_scale) {
  const double inv_scale = std::exp(-log_scale);
  const double half_bin = 1.0 / 255.0;  // 256 levels on [-1, 1]: bins of width 2/255
  const double z_plus = (x - mean + half_bin) * inv_scale, z_minus = (x - mean - half_bin) * inv_scale;
  const bool lowest = x < -0.999, highest = x > 0.999;
  // p_theta(x_0 | x_1) = prod_i int_{delta_-(x_0^i)}^{delta_+(x_0^i)} N(x; mu_theta^i(x_1, 1), sigma_1^2) dx,
  // delta_+ = inf if x = 1 else x + 1/255, delta_- = -inf if x = -1 else x - 1/255   (Ho et al. Eq. 13)
  double log_p;
  if (lowest) {
    log_p = log_normal_cdf(z_plus);  // the bin of -1 reaches -inf: Phi(z+)
  } else if (highest) {
    log_p = log_normal_cdf(-z_minus);  // the bin of +1 reaches +inf: 1 - Phi(z-) = Phi(-z-)
  } else {
    // Phi(z+) - Phi(z-), taken in the tail where it does not cancel
    const double p = z_minus > 0 ? 0.5 * std::erfc(z_minus / std::sqrt(2.0)) - 0.5 * std::erfc(z_plus / std::sqrt(2.0))
                                 : 0.5 * std::erfc(-z_plus / std::sqrt(2.0)) - 0.5 * std::erfc(-z_minus / std::sqrt(2.0));
    // Far tail, where the difference underflows: in logs, on the tail's side,
    // Phi(z+) - Phi(z-) = Phi(-z-) - Phi(-z+) above the mean.
    log_p = p > 1e-300                ? std::log(p)
            : z_minus > 0 ? log_diff_exp(log_normal_cdf(-z_minus), log_normal_cdf(-z_plus))
                          : log_diff_exp(log_normal_cdf(z_plus), log_normal_cdf(z_minus));
  }
  if (dlog_scale) {
    // d log P / d ls = (z- phi(z-) - z+ phi(z+)) / P, with dz/d ls = -z at both edges; an open
    // edge (z- = -inf at x = -1, z+ = +inf at x = 1) contributes 0. Each phi(z) / P is formed in
    // logs, so it holds far into the tails where P underflows.
    double d = 0.0;
    if (!lowest) d += z_minus * std::exp(log_normal_pdf(z_minus) - log_p);
    if (!highest) d -= z_plus * std::exp(log_normal_pdf(z_plus) - log_p);
    *dlog_scale = d;
  }
  return log_p;
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

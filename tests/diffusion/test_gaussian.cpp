// Tests for ddpm/diffusion/gaussian.h: the KL against Monte Carlo, the discretized decoder's
// bins summing to 1, and log Phi and the decoder against mpmath far into the tails.
#include <cmath>
#include <map>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/gaussian.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/ops/elementwise.h"
#include "tests/fixtures/log_cdf_reference.h"
#include "tests/diffusion/testing.h"
#include "tests/oracle.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

TEST_CASE("gaussian: normal_kl matches a Monte Carlo estimate") {
  // KL(p || q) = E_p[log p(x) - log q(x)], x ~ p; M draws in double.
  struct Case { double m1, lv1, m2, lv2; };
  for (Case c : {Case{0.3, std::log(0.5), -0.2, std::log(2.0)}, Case{1.0, std::log(0.01), 0.9, std::log(0.02)},
                 Case{0.0, 0.0, 0.0, 0.0}}) {
    const int64_t M = 200000;
    double s = 0, s2 = 0;
    for (int64_t k = 0; k < M; k++) {
      const double x = c.m1 + std::exp(0.5 * c.lv1) * normal(RngKey{99, 1}, k);
      auto logpdf = [](double x, double m, double lv) { return -0.5 * (std::log(2 * M_PI) + lv + (x - m) * (x - m) / std::exp(lv)); };
      const double d = logpdf(x, c.m1, c.lv1) - logpdf(x, c.m2, c.lv2);
      s += d;
      s2 += d * d;
    }
    const double mean = s / M, se = std::sqrt((s2 / M - mean * mean) / M);
    const double kl = normal_kl(c.m1, c.lv1, c.m2, c.lv2);
    CAPTURE(kl);
    CHECK(std::fabs(mean - kl) <= 4 * se + 1e-12);  // k = 4 standard errors (0 for identical Gaussians)
  }
  // The tensor version is the scalar one elementwise.
  Tensor m1 = randn({2, 3}, 1), lv1 = randn({2, 3}, 2, 0.3f), m2 = randn({2, 3}, 3), lv2 = randn({2, 3}, 4, 0.3f);
  Tensor k = normal_kl(m1, lv1, m2, lv2);
  for (int64_t j = 0; j < 6; j++) CHECK(k[j] == doctest::Approx(normal_kl(m1[j], lv1[j], m2[j], lv2[j])).epsilon(1e-6));
}

TEST_CASE("gaussian: the discretized decoder's probabilities over the 256 bins sum to 1") {
  for (double mean : {-1.3, -0.999, -0.2, 0.0, 0.5, 1.0, 2.0}) {
    for (double scale : {1e-4, 0.003, 0.05, 0.7, 3.0}) {
      double total = 0;
      for (int k = 0; k < 256; k++) total += std::exp(discretized_gaussian_log_prob(-1.0 + 2.0 * k / 255.0, mean, std::log(scale)));
      CAPTURE(mean);
      CAPTURE(scale);
      // The bins tile the real line: the sum telescopes to Phi(inf) - Phi(-inf); erfc's rounding ~1e-15 per bin.
      CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
    }
  }
  // Each bin is Phi(x + 1/255) - Phi(x - 1/255) in the interior.
  const double x = -1.0 + 2.0 * 100 / 255.0, m = -0.2, sd = 0.3;
  auto Phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  CHECK(std::exp(discretized_gaussian_log_prob(x, m, std::log(sd))) ==
        doctest::Approx(Phi((x + 1 / 255.0 - m) / sd) - Phi((x - 1 / 255.0 - m) / sd)).epsilon(1e-10));
  // Far tails stay finite (no log 0).
  CHECK(std::isfinite(discretized_gaussian_log_prob(1.0, -1.0, std::log(1e-3))));
  CHECK(std::isfinite(discretized_gaussian_log_prob(0.0, 0.9, std::log(1e-3))));
  // The tensor version is the scalar one.
  Tensor xs = Tensor::from({3}, {-1.0f, 0.0f, 1.0f}), ms = Tensor::from({3}, {0.1f, 0.2f, 0.3f}), ls = Tensor::full({3}, -2.0f);
  Tensor ll = discretized_gaussian_log_likelihood(xs, ms, ls);
  for (int j = 0; j < 3; j++) CHECK(ll[j] == doctest::Approx(discretized_gaussian_log_prob(xs[j], ms[j], -2.0)).epsilon(1e-6));
}

TEST_CASE("gaussian: log Phi and the decoder's log-probabilities match mpmath in every branch, far into the tails") {
  // Values: tests/fixtures/log_cdf_reference.py (mpmath at 60 digits). Tolerance 1e-12
  // relative, everywhere: the double evaluations are good to ~1e-15, and the decoder's bin
  // edges, formed in double from x, mean and log_scale, move log P by ~1e-16 |log P|. Relative
  // also in the upper tail, where log Phi(z) = -(1 - Phi(z)) is tiny but not 0. z = -29.9,
  // -30, -30.1 straddle the switch from erfc to the asymptotic series.
  namespace ref = log_cdf_reference;
  for (const ref::LogCdf& c : ref::kLogCdf) {
    CAPTURE(c.z);
    CHECK(log_normal_cdf(c.z) == doctest::Approx(c.log_phi).epsilon(1e-12).scale(0));
  }
  for (const ref::Bin& b : ref::kBins) {
    CAPTURE(b.x);
    CAPTURE(b.mean);
    CAPTURE(std::exp(b.log_scale));
    CHECK(discretized_gaussian_log_prob(b.x, b.mean, b.log_scale) == doctest::Approx(b.log_p).epsilon(1e-12).scale(0));
  }
}

// Tests for ddpm/diffusion/schedule.h and ddpm/diffusion/diffusion.h: every formula of the derivation checked
// numerically. docs/derivation.md names the test case that checks each formula.
//
// Monte Carlo checks use fixed seeds and a band of k = 4 standard errors: a correct
// implementation would fail one with probability about 6e-5 for an arbitrary seed, and any
// wrong coefficient in the formulas moves the estimate by far more than the band.
#include <cmath>
#include <map>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/gaussian.h"
#include "ddpm/ops/elementwise.h"
#include "tests/fixtures/log_cdf_reference.h"
#include "tests/oracle.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gaussian_oracle;
using testing::gaussian_oracle_model;
using testing::gradcheck;
using testing::randn;

namespace {

std::vector<int64_t> all_t(int64_t N, int64_t t) { return std::vector<int64_t>(N, t); }

// The network's eps_theta with the paper's fixed Sigma_theta = sigma_t^2 I.
ModelPrediction fixed(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& eps_theta,
                      VarianceType v = VarianceType::fixed_large) {
  return ModelPrediction{eps_theta, fixed_sigma(s, v, x_t, t)};
}

// Mean and variance of all elements, in double.
void moments(const Tensor& x, double& mean, double& var) {
  double s = 0, s2 = 0;
  for (int64_t j = 0; j < x.numel(); j++) s += x[j];
  mean = s / x.numel();
  for (int64_t j = 0; j < x.numel(); j++) s2 += (x[j] - mean) * (x[j] - mean);
  var = s2 / (x.numel() - 1);
}

}  // namespace

// ---------------------------------------------------------------------------
// Schedules

TEST_CASE("diffusion: schedules match an independent evaluation of their formulas") {
  for (int64_t T : {1, 2, 10, 1000}) {
    const double lin_step = T == 1 ? 0.0 : 1.0 / (T - 1);  // linspace's step in units of (end - start)
    auto f = [T](double t) { return std::pow(std::cos((t / T + 0.008) / 1.008 * M_PI / 2), 2); };
    for (const std::string& name : schedule_names()) {
      Schedule s = make_schedule(name, T);
      CAPTURE(name);
      CAPTURE(T);
      REQUIRE(s.T == T);
      REQUIRE(s.beta.size() == static_cast<size_t>(T + 1));
      // Boundary values: the paper's t = 0 convention.
      CHECK(s.beta[0] == 0.0);
      CHECK(s.alpha_bar[0] == 1.0);
      double prod = 1.0;
      for (int64_t t = 1; t <= T; t++) {
        double want;
        const double u = (t - 1) * lin_step;  // 0 at t = 1, 1 at t = T
        if (name == "linear") want = 1e-4 + u * (0.02 - 1e-4);
        else if (name == "quadratic") want = std::pow(0.01 + u * (std::sqrt(0.02) - 0.01), 2);
        else if (name == "sigmoid") want = (0.02 - 1e-4) / (1 + std::exp(6 - 12 * u)) + 1e-4;
        else want = std::min(0.999, 1 - f(t) / f(t - 1));
        // Same formula, different arithmetic order: a few ulps in double.
        CHECK(s.beta[t] == doctest::Approx(want).epsilon(1e-12));
        prod *= 1 - want;
        CHECK(s.alpha_bar[t] == doctest::Approx(prod).epsilon(1e-12));
        CHECK(s.alpha_bar[t] < s.alpha_bar[t - 1]);  // strictly decreasing
        CHECK(s.alpha_bar[t] > 0.0);
        // Cosine, wherever beta was not clipped: alpha_bar_t = f(t) / f(0) directly.
        if (name == "cosine" && 1 - f(t) / f(t - 1) < 0.999) CHECK(s.alpha_bar[t] == doctest::Approx(f(t) / f(0)).epsilon(1e-10));
      }
    }
  }
  // schedule_betas gives the betas make_schedule builds on (index 0 is beta_1 there).
  for (const std::string& name : schedule_names()) {
    const std::vector<double> betas = schedule_betas(name, 10);
    const Schedule s10 = make_schedule(name, 10);
    CAPTURE(name);
    CHECK(std::vector<double>(s10.beta.begin() + 1, s10.beta.end()) == betas);
  }
  // The paper's values: linear beta_1 = 1e-4, beta_T = 0.02 at T = 1000; cosine's last beta clipped.
  Schedule lin = make_schedule("linear", 1000);
  CHECK(lin.beta[1] == 1e-4);
  CHECK(lin.beta[1000] == doctest::Approx(0.02).epsilon(1e-14));
  CHECK(lin.alpha_bar[1000] == doctest::Approx(4.0358e-5).epsilon(1e-3));  // the well-known ~4e-5 at T = 1000
  CHECK(make_schedule("cosine", 1000).beta[1000] == 0.999);
  // Options reach the formulas.
  ScheduleOptions o;
  o.beta_start = 1e-3;
  o.beta_end = 0.2;
  Schedule lin100 = make_schedule("linear", 100, o);
  CHECK(lin100.beta[1] == 1e-3);
  CHECK(lin100.beta[100] == doctest::Approx(0.2).epsilon(1e-14));
}

TEST_CASE("diffusion: make_schedule rejects unknown names and T outside 1..kMaxT with a clear error") {
  CHECK_THROWS_WITH_AS(make_schedule("cosinus", 10), doctest::Contains("unknown schedule 'cosinus'"), Error);
  CHECK_THROWS_WITH_AS(make_schedule("linear", 0), doctest::Contains("T = 0 not in [1, 100000]"), Error);
  CHECK_THROWS_AS(make_schedule("linear", -5), Error);
  // Above the bound every tool applies, refused before the arrays are allocated (issue 14,
  // section 2: T = 1e11 was std::bad_alloc, 1e7 took 1.5 GB).
  CHECK(kMaxT == 100000);
  CHECK(make_schedule("linear", kMaxT).T == kMaxT);
  CHECK_THROWS_WITH_AS(make_schedule("linear", kMaxT + 1), doctest::Contains("T = 100001 not in [1, 100000]"), Error);
  CHECK_THROWS_WITH_AS(make_schedule("cosine", 100000000000), doctest::Contains("T = 100000000000 not in [1, 100000]"),
                       Error);
  CHECK_THROWS_WITH_AS(check_T(100000000000, "--T"), doctest::Contains("--T 100000000000 not in [1, 100000]"), Error);
  CHECK_THROWS_WITH_AS(schedule_from_betas("x", {0.1, 1.0}), doctest::Contains("beta_2 = 1"), Error);
}

TEST_CASE("diffusion: derived quantities match their definitions") {
  for (const std::string& name : schedule_names()) {
    Schedule s = make_schedule(name, 50);
    for (int64_t t = 1; t <= s.T; t++) {
      const double b = s.beta[t], a = 1 - b, ab = s.alpha_bar[t], abp = s.alpha_bar[t - 1];
      // Definitions restated; double arithmetic, a few ulps.
      CHECK(s.alpha[t] == doctest::Approx(a).epsilon(1e-14));
      CHECK(s.alpha_bar_prev[t] == abp);
      CHECK(s.sqrt_alpha_bar[t] == doctest::Approx(std::sqrt(ab)).epsilon(1e-14));
      CHECK(s.sqrt_one_minus_alpha_bar[t] == doctest::Approx(std::sqrt(1 - ab)).epsilon(1e-14));
      CHECK(s.sqrt_recip_alpha[t] == doctest::Approx(1 / std::sqrt(a)).epsilon(1e-14));
      CHECK(s.eps_coef[t] == doctest::Approx(b / std::sqrt(1 - ab)).epsilon(1e-14));
      CHECK(s.posterior_mean_coef1[t] == doctest::Approx(std::sqrt(abp) * b / (1 - ab)).epsilon(1e-14));
      CHECK(s.posterior_mean_coef2[t] == doctest::Approx(std::sqrt(a) * (1 - abp) / (1 - ab)).epsilon(1e-14));
      const double clipped = t == 1 ? s.posterior_variance[2] : s.posterior_variance[t];
      CHECK(s.posterior_log_variance_clipped[t] == doctest::Approx(std::log(clipped)).epsilon(1e-14));
      // Float copies are the rounded doubles.
      CHECK(s.f.alpha_bar[t] == static_cast<float>(ab));
      CHECK(s.f.eps_coef[t] == static_cast<float>(s.eps_coef[t]));
    }
    CHECK(s.posterior_variance[1] == 0.0);  // beta-tilde_1 = 0: alpha-bar_0 = 1
  }
  // alpha-bar_t = prod_{s <= t} alpha_s from hand-picked betas: 0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7
  // (a few double roundings).
  Schedule hand = schedule_from_betas("hand", {0.1, 0.2, 0.3});
  CHECK(hand.alpha[3] == doctest::Approx(0.7).epsilon(1e-15));
  CHECK(hand.alpha_bar[1] == doctest::Approx(0.9).epsilon(1e-15));
  CHECK(hand.alpha_bar[2] == doctest::Approx(0.72).epsilon(1e-15));
  CHECK(hand.alpha_bar[3] == doctest::Approx(0.504).epsilon(1e-15));
}

// ---------------------------------------------------------------------------
// Forward process

TEST_CASE("diffusion: iterating q(x_t|x_{t-1}) gives q(x_t|x_0), propagated exactly") {
  // x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps propagates mean and variance as
  // mean_t = sqrt(alpha_t) mean_{t-1}, var_t = alpha_t var_{t-1} + beta_t, from (x_0, 0).
  for (const std::string& name : schedule_names()) {
    Schedule s = make_schedule(name, 1000);
    const double x0 = 0.7;
    double mean = x0, var = 0.0;
    for (int64_t t = 1; t <= s.T; t++) {
      mean *= std::sqrt(s.alpha[t]);
      var = s.alpha[t] * var + s.beta[t];
      // Against q(x_t|x_0) = N(sqrt(alpha-bar_t) x_0, 1 - alpha-bar_t): 1000 steps of double rounding.
      CHECK(mean == doctest::Approx(s.sqrt_alpha_bar[t] * x0).epsilon(1e-12));
      CHECK(var == doctest::Approx(1 - s.alpha_bar[t]).epsilon(1e-12));
    }
  }
}

TEST_CASE("diffusion: iterating q_step matches q(x_t|x_0) by Monte Carlo") {
  Schedule s = make_schedule("cosine", 100);
  const int64_t N = 20000;
  Tensor x0 = Tensor::full({N, 1, 1, 1}, 0.8f);
  std::vector<Tensor> chain = forward_chain(s, x0, 7);
  REQUIRE(chain.size() == 101u);
  for (int64_t t : {1, 10, 50, 90, 100}) {
    double mean, var;
    moments(chain[t], mean, var);
    const double want_mean = s.sqrt_alpha_bar[t] * 0.8, want_var = 1 - s.alpha_bar[t];
    // q_mean_variance states the same law (float32 values of the double formulas).
    const Gaussian q = q_mean_variance(s, x0, all_t(N, t));
    CHECK(q.mean[N - 1] == doctest::Approx(want_mean).epsilon(1e-6));
    CHECK(q.variance[0] == doctest::Approx(want_var).epsilon(1e-6));
    CHECK(q.log_variance[0] == doctest::Approx(std::log(want_var)).epsilon(1e-6));
    // Standard errors of the sample mean and variance of N Gaussian draws; k = 4.
    const double se_mean = std::sqrt(want_var / N), se_var = want_var * std::sqrt(2.0 / (N - 1));
    CAPTURE(t);
    CHECK(std::fabs(mean - want_mean) <= 4 * se_mean + 1e-6);
    CHECK(std::fabs(var - want_var) <= 4 * se_var + 1e-7);
  }
  // q_sample draws from the same marginal in one step.
  Tensor eps = randn({N, 1, 1, 1}, 3);
  Tensor x50 = q_sample(s, x0, all_t(N, 50), eps);
  double mean, var;
  moments(x50, mean, var);
  const double want_var = 1 - s.alpha_bar[50];
  CHECK(std::fabs(mean - s.sqrt_alpha_bar[50] * 0.8) <= 4 * std::sqrt(want_var / N));
  CHECK(std::fabs(var - want_var) <= 4 * want_var * std::sqrt(2.0 / (N - 1)));
  // Exact values of one q_sample element (float arithmetic: 1e-6).
  CHECK(x50[5] == doctest::Approx(s.sqrt_alpha_bar[50] * 0.8 + s.sqrt_one_minus_alpha_bar[50] * eps[5]).epsilon(1e-6));
}

TEST_CASE("diffusion: q_step is x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps, one draw of q(x_t|x_{t-1})") {
  // With eps ~ N(0, I), sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (Eq. 2),
  // so the values for given eps pin the distribution down. Each sample has its own t.
  for (const std::string& name : schedule_names()) {
    Schedule s = make_schedule(name, 1000);
    CAPTURE(name);
    const std::vector<int64_t> t = {1, 2, 400, 999, 1000};
    const int64_t N = 5, D = 6;
    Tensor x_prev = randn({N, 1, 2, 3}, 71, 2.0f), eps = randn({N, 1, 2, 3}, 72);
    Tensor got = q_step(s, x_prev, t, eps);
    Tensor want(got.shape());
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = i * D; j < (i + 1) * D; j++)
        want[j] = static_cast<float>(std::sqrt(s.alpha[t[i]]) * x_prev[j] + std::sqrt(1 - s.alpha[t[i]]) * eps[j]);
    testing::check_allclose("q_step", got, want, 1e-6, 1e-6);  // float coefficients and products: a few ulps of O(1)
    // eps = 0 gives the mean; x_{t-1} = 0 gives sqrt(beta_t) eps, whose square is beta_t eps^2.
    Tensor mean = q_step(s, x_prev, t, Tensor::full(x_prev.shape(), 0.0f));
    Tensor noise = q_step(s, Tensor::full(x_prev.shape(), 0.0f), t, Tensor::full(x_prev.shape(), 1.0f));
    for (int64_t i = 0; i < N; i++) {
      CHECK(mean[i * D] == doctest::Approx(std::sqrt(1 - s.beta[t[i]]) * x_prev[i * D]).epsilon(1e-6));
      CHECK(noise[i * D] * noise[i * D] == doctest::Approx(s.beta[t[i]]).epsilon(1e-6));
    }
  }
}

// ---------------------------------------------------------------------------
// Posterior

TEST_CASE("diffusion: beta-tilde from completing the square equals the closed form (slide 8)") {
  for (const std::string& name : schedule_names()) {
    Schedule s = make_schedule(name, 1000);
    for (int64_t t = 1; t <= s.T; t++) {
      // 1 / (alpha_t / beta_t + 1 / (1 - alpha-bar_{t-1})); at t = 1 the second term is 1/0 = inf
      // in IEEE arithmetic and the whole is 0 = beta-tilde_1.
      const double square = 1.0 / (s.alpha[t] / s.beta[t] + 1.0 / (1.0 - s.alpha_bar[t - 1]));
      const double closed = (1.0 - s.alpha_bar[t - 1]) / (1.0 - s.alpha_bar[t]) * s.beta[t];
      CHECK(square == doctest::Approx(closed).epsilon(1e-10));  // different cancellations near t = 1
      CHECK(s.posterior_variance[t] == doctest::Approx(closed).epsilon(1e-14));
    }
  }
}

TEST_CASE("diffusion: posterior mean from (x_t, x_0) equals A x_t - B eps (slides 10-12)") {
  for (const std::string& name : schedule_names()) {
    Schedule s = make_schedule(name, 200);
    for (int64_t t = 1; t <= s.T; t++) {
      const double a = s.alpha[t], b = s.beta[t], ab = s.alpha_bar[t], abp = s.alpha_bar[t - 1];
      // Slide 10's bracket and eps coefficient, before simplification ...
      const double A_bracket = std::sqrt(a) * (1 - abp) / (1 - ab) + std::sqrt(abp) * b / (std::sqrt(ab) * (1 - ab));
      const double B_raw = std::sqrt(abp) * b * std::sqrt(1 - ab) / (std::sqrt(ab) * (1 - ab));
      // ... equal slides 11-12's closed forms (relative 1e-10: the bracket sums two terms that
      // nearly cancel against 1/sqrt(alpha) only through the identity, in double).
      CHECK(A_bracket == doctest::Approx(1 / std::sqrt(a)).epsilon(1e-10));
      CHECK(B_raw == doctest::Approx(b / (std::sqrt(a) * std::sqrt(1 - ab))).epsilon(1e-10));
      CHECK(s.sqrt_recip_alpha[t] * s.eps_coef[t] == doctest::Approx(B_raw).epsilon(1e-10));
    }
    // The tensor functions: q_posterior's mean with x_0 written through eps equals A x_t - B eps.
    const int64_t N = 6;
    Tensor x0 = randn({N, 1, 3, 3}, 21, 0.5f), eps = randn({N, 1, 3, 3}, 22);
    std::vector<int64_t> t = {1, 2, 17, 100, 150, 200};
    Tensor x_t = q_sample(s, x0, t, eps);
    Tensor mu_from_x0 = q_posterior(s, x0, x_t, t).mean;
    Tensor mu_from_eps = posterior_mean_from_eps(s, x_t, t, eps);
    // float32 throughout; at t = T for cosine, B ~ 30 amplifies eps's rounding: atol 1e-4.
    testing::check_allclose("mu-tilde: coef form vs A x_t - B eps", mu_from_eps, mu_from_x0, 1e-4, 1e-4);
    // And x_0 recovered from (x_t, eps) (slide 10; Eq. 15); 1/sqrt(alpha-bar_T) amplifies rounding.
    Tensor x0_back = predict_x0_from_eps(s, x_t, std::vector<int64_t>{1, 2, 17, 100, 150, 150}, eps);
    Tensor x0_some = x0.clone();
    testing::check_allclose("x0 from (x_t, eps), t < T", x0_back.data(), x0_some.data(), 5 * 9, 1e-4, 1e-4);
  }
}

// ---------------------------------------------------------------------------
// Reverse process

TEST_CASE("diffusion: p_sample is Algorithm 2 line 4, with z = 0 at t = 1") {
  Schedule s = make_schedule("linear", 1000);
  const int64_t N = 4;
  Tensor x_t = randn({N, 2, 2, 2}, 31), eps_theta = randn({N, 2, 2, 2}, 32), z = randn({N, 2, 2, 2}, 33);
  std::vector<int64_t> t = {1, 2, 500, 1000};
  for (VarianceType v : {VarianceType::fixed_large, VarianceType::fixed_small}) {
    Tensor got = p_sample(s, x_t, t, fixed(s, x_t, t, eps_theta, v), z);
    Tensor want(x_t.shape());
    for (int64_t i = 0; i < N; i++) {
      const int64_t ti = t[i];
      const double sigma2 = v == VarianceType::fixed_large ? s.beta[ti] : s.posterior_variance[ti];
      for (int64_t j = i * 8; j < (i + 1) * 8; j++) {
        // x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t)/sqrt(1 - alpha-bar_t) eps_theta) + sigma_t z
        const double mean = (x_t[j] - (1 - s.alpha[ti]) / std::sqrt(1 - s.alpha_bar[ti]) * eps_theta[j]) / std::sqrt(s.alpha[ti]);
        want[j] = static_cast<float>(mean + (ti > 1 ? std::sqrt(sigma2) * z[j] : 0.0));
      }
    }
    testing::check_allclose(variance_name(v), got, want, 1e-5, 1e-5);  // float vs double coefficients
  }
  // sigma_t^2 itself: beta_t (fixed large) or beta-tilde_t (fixed small); at t = 1 both take
  // beta-tilde_2 (the clipped posterior_log_variance_clipped[1]), as the original code does.
  for (int64_t ti : {2, 3, 500, 1000}) {
    CHECK(reverse_variance(s, ti, VarianceType::fixed_large) == s.beta[ti]);
    CHECK(reverse_variance(s, ti, VarianceType::fixed_small) == doctest::Approx(s.posterior_variance[ti]).epsilon(1e-14));
  }
  CHECK(reverse_variance(s, 1, VarianceType::fixed_small) == doctest::Approx(s.posterior_variance[2]).epsilon(1e-14));
  CHECK(reverse_variance(s, 1, VarianceType::fixed_large) == doctest::Approx(s.posterior_variance[2]).epsilon(1e-14));
  // p_mean_variance's variance: beta_t (large) or beta-tilde_t (small); at t = 1 both logs are
  // log beta-tilde_2, as the original code's (np.append(posterior_variance[1], betas[1:])).
  PMeanVariance large = p_mean_variance(s, x_t, t, fixed(s, x_t, t, eps_theta, VarianceType::fixed_large));
  PMeanVariance small = p_mean_variance(s, x_t, t, fixed(s, x_t, t, eps_theta, VarianceType::fixed_small));
  CHECK(large.variance[3 * 8] == static_cast<float>(s.beta[1000]));
  CHECK(large.log_variance[3 * 8] == static_cast<float>(std::log(s.beta[1000])));
  CHECK(small.variance[2 * 8] == static_cast<float>(s.posterior_variance[500]));
  CHECK(small.log_variance[0] == static_cast<float>(std::log(s.posterior_variance[2])));
  CHECK(large.log_variance[0] == static_cast<float>(std::log(s.posterior_variance[2])));
  // Sigma_theta is the model's: p_mean_variance passes any Sigma through unchanged.
  Sigma any{Tensor::full(x_t.shape(), 0.25f), Tensor::full(x_t.shape(), std::log(0.25f))};
  PMeanVariance passed = p_mean_variance(s, x_t, t, ModelPrediction{eps_theta, any});
  CHECK(passed.variance[5] == 0.25f);
  CHECK(passed.log_variance[5] == std::log(0.25f));
  CHECK_THROWS_WITH_AS(p_mean_variance(s, x_t, t, ModelPrediction{eps_theta, Sigma{}}),
                       doctest::Contains("Sigma_theta"), Error);
}

TEST_CASE("diffusion: clipping x0 is off by default and, when on, uses mu-tilde(x_t, clip(pred_x0))") {
  Schedule s = make_schedule("linear", 1000);
  Tensor x_t = randn({3, 1, 4, 4}, 41, 3.0f), eps_theta = randn({3, 1, 4, 4}, 42, 2.0f);
  std::vector<int64_t> t = {5, 300, 999};
  SampleOptions defaults;
  CHECK_FALSE(defaults.clip_x0);  // off by default: Algorithm 2 as written
  PMeanVariance plain = p_mean_variance(s, x_t, t, fixed(s, x_t, t, eps_theta));
  PMeanVariance clipped = p_mean_variance(s, x_t, t, fixed(s, x_t, t, eps_theta), /*clip_x0=*/true);
  int outside = 0;
  for (int64_t j = 0; j < plain.pred_x0.numel(); j++) outside += std::fabs(plain.pred_x0[j]) > 1;
  REQUIRE(outside > 10);  // the inputs exercise the clip
  Tensor x0c = plain.pred_x0.clone();
  for (int64_t j = 0; j < x0c.numel(); j++) x0c[j] = std::min(1.0f, std::max(-1.0f, x0c[j]));
  testing::check_allclose("clipped pred_x0", clipped.pred_x0, x0c, 0, 0);
  testing::check_allclose("clipped mean", clipped.mean, q_posterior(s, x0c, x_t, t).mean, 1e-6, 1e-6);
  // Unclipped, mu-tilde(x_t, pred_x0) is the same as A x_t - B eps_theta (float rounding; 1/sqrt(alpha-bar) ~ 100 at t = 999).
  testing::check_allclose("unclipped mean", plain.mean, q_posterior(s, plain.pred_x0, x_t, t).mean, 1e-3, 1e-4);
}

// ---------------------------------------------------------------------------
// Losses and the bound

TEST_CASE("diffusion: normal_kl matches a Monte Carlo estimate") {
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

TEST_CASE("diffusion: L_t as a KL with sigma^2 = beta-tilde equals the weighted eps-MSE form (slides 13-14)") {
  Schedule s = make_schedule("linear", 1000);
  const int64_t N = 5, D = 2 * 3 * 3;
  Tensor x0 = randn({N, 2, 3, 3}, 51, 0.5f), eps = randn({N, 2, 3, 3}, 52), eps_theta = randn({N, 2, 3, 3}, 53);
  std::vector<int64_t> t = {2, 10, 250, 700, 1000};
  Tensor x_t = q_sample(s, x0, t, eps);
  Gaussian q = q_posterior(s, x0, x_t, t);
  for (VarianceType v : {VarianceType::fixed_small, VarianceType::fixed_large}) {
    PMeanVariance p = p_mean_variance(s, x_t, t, fixed(s, x_t, t, eps_theta, v));
    Tensor kl = normal_kl(q.mean, q.log_variance, p.mean, p.log_variance);
    for (int64_t i = 0; i < N; i++) {
      double kl_i = 0;
      for (int64_t j = i * D; j < (i + 1) * D; j++) kl_i += kl[j];
      // KL of Gaussians with variances beta-tilde and sigma^2 = C + ||mu-tilde - mu_theta||^2 / (2 sigma^2),
      // C = D/2 (log(sigma^2/beta-tilde) + beta-tilde/sigma^2 - 1); C = 0 for fixed small.
      const double bt = s.posterior_variance[t[i]], sigma2 = reverse_variance(s, t[i], v);
      const double C = 0.5 * D * (std::log(sigma2 / bt) + bt / sigma2 - 1);
      Tensor et_i = Tensor::from({1, 2, 3, 3}, std::vector<float>(eps_theta.data() + i * D, eps_theta.data() + (i + 1) * D));
      Tape t2 = Tape::no_grad();
      Var w_i = weighted_sse(t2, constant(et_i), Tensor::from({1, 2, 3, 3}, std::vector<float>(eps.data() + i * D, eps.data() + (i + 1) * D)),
                             {loss_weight(s, t[i], v)});
      CAPTURE(i);
      CAPTURE(std::string(variance_name(v)));
      // float32 means differenced: relative 1e-3 (the KL at t = 2 divides tiny differences by beta-tilde_2 ~ 5e-5).
      CHECK(kl_i == doctest::Approx(C + w_i->value[0]).epsilon(2e-3));
    }
  }
}

TEST_CASE("diffusion: loss_simple and the weighted loss have the right values and gradients") {
  Schedule s = make_schedule("cosine", 100);
  Tensor eps = randn({3, 1, 2, 2}, 61);
  std::vector<int64_t> t = {1, 40, 100};
  // Both are quadratic in the prediction, so float32 central differences are exact for any
  // step but for the rounding of the loss, ~6e-8 |L| / (2h). loss_simple is O(1): h = 0.25.
  // In loss_weighted t = 1's weight dominates (L ~ 2e3, its entries ~1e3) and the other
  // images' entries are 1e-4..0.3: h = 16 brings the loss's rounding to ~4e-6, so atol 1e-5.
  gradcheck("loss_simple", [&](Tape& tp, const std::vector<Var>& v) { return loss_simple(tp, v[0], eps); },
            {randn({3, 1, 2, 2}, 62)}, 0.25, testing::GradTol{2e-6, 1e-5});
  gradcheck("loss_weighted",
            [&](Tape& tp, const std::vector<Var>& v) { return loss_weighted(tp, s, v[0], eps, t, VarianceType::fixed_small); },
            {randn({3, 1, 2, 2}, 63)}, 16, testing::GradTol{1e-5, 1e-5});
  // Values: L_simple is the mean of squares; the weighted loss is (1/N) sum_i w_i sse_i.
  Tensor et = randn({3, 1, 2, 2}, 64);
  Tape tape = Tape::no_grad();
  double mse = 0, wsum = 0;
  for (int64_t i = 0; i < 3; i++) {
    double sse = 0;
    for (int64_t j = i * 4; j < (i + 1) * 4; j++) sse += (eps[j] - et[j]) * (eps[j] - et[j]);
    mse += sse / 12;
    wsum += loss_weight(s, t[i], VarianceType::fixed_large) * sse / 3;
  }
  CHECK(loss_simple(tape, constant(et), eps)->value[0] == doctest::Approx(mse).epsilon(1e-6));
  CHECK(loss_weighted(tape, s, constant(et), eps, t, VarianceType::fixed_large)->value[0] == doctest::Approx(wsum).epsilon(1e-6));
  // The scaling term restated: beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha-bar_t)); fixed large gives beta_t / (2 alpha_t (1 - alpha-bar_t)).
  CHECK(loss_weight(s, 40, VarianceType::fixed_large) == doctest::Approx(s.beta[40] / (2 * s.alpha[40] * (1 - s.alpha_bar[40]))).epsilon(1e-13));
}

TEST_CASE("diffusion: the discretized decoder's probabilities over the 256 bins sum to 1") {
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

TEST_CASE("diffusion: log Phi and the decoder's log-probabilities match mpmath in every branch, far into the tails") {
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

// ---------------------------------------------------------------------------
// Oracle checks on Gaussian data x_0 ~ N(m, s^2 I)

TEST_CASE("diffusion: Algorithm 2 with the Gaussian oracle reproduces N(m, s^2)") {
  const double m = 0.3, sd = 0.5;
  Schedule s = make_schedule("linear", 1000);
  EpsFn oracle = gaussian_oracle(s, m, sd);
  const int64_t N = 2000;  // images of [1, 2, 2]: 8000 values
  for (VarianceType v : {VarianceType::fixed_large, VarianceType::fixed_small}) {
    CAPTURE(std::string(variance_name(v)));
    Tensor x0 = sample(s, fixed_variance_model(s, oracle, v), {N, 1, 2, 2}, 1234).x0;
    // Algorithm 2 with this oracle is a linear-Gaussian recursion, x_{t-1} = c1 x_t + c0 + sigma_t z,
    // so its output law N(mu, var) is computable exactly from x_T ~ N(0, 1).
    double mu = 0, var = 1;
    for (int64_t t = s.T; t >= 1; t--) {
      const double ab = s.alpha_bar[t], k = std::sqrt(1 - ab) / (ab * sd * sd + 1 - ab);
      const double A = 1 / std::sqrt(s.alpha[t]), B = A * s.beta[t] / std::sqrt(1 - ab);
      const double sigma2 = t == 1 ? 0 : (v == VarianceType::fixed_large ? s.beta[t] : s.posterior_variance[t]);
      mu = (A - B * k) * mu + B * k * std::sqrt(ab) * m;
      var = (A - B * k) * (A - B * k) * var + sigma2;
    }
    // The recursion lands on N(m, s^2) up to the discretization of T = 1000 steps (0.3% of s^2 for
    // fixed large, 1.5% for fixed small): 2% of s^2, and 1e-3 in the mean (alpha-bar_T ~ 4e-5).
    CHECK(std::fabs(mu - m) < 1e-3);
    CHECK(std::fabs(var - sd * sd) < 0.02 * sd * sd);
    // The samples follow that law within k = 4 standard errors.
    double mean, svar;
    moments(x0, mean, svar);
    const double M = static_cast<double>(x0.numel());
    CHECK(std::fabs(mean - mu) <= 4 * std::sqrt(var / M));
    CHECK(std::fabs(svar - var) <= 4 * var * std::sqrt(2 / (M - 1)));
    // Hence within the band of the data law too.
    CHECK(std::fabs(mean - m) <= 4 * std::sqrt(var / M) + 1e-3);
    CHECK(std::fabs(svar - sd * sd) <= 4 * var * std::sqrt(2 / (M - 1)) + 0.02 * sd * sd);
  }
}

TEST_CASE("diffusion: the VLB with the Gaussian oracle bounds the true NLL, within a stated margin") {
  // Data: x_0 ~ N(m, s^2) quantized to the 256-level grid on [-1, 1] (edge bins open), four
  // independent dimensions per image. Its true NLL is the entropy H of the bin probabilities
  // P_k = Phi(upper_k) - Phi(lower_k), computable exactly. Any model's bound satisfies
  // E[L_vlb] >= E[-log p_theta(x_0)] >= H (Gibbs), so the oracle's bound must sit above H.
  const double m = 0.1, sd = 0.3;
  double H = 0;  // nats per dimension
  for (int k = 0; k < 256; k++) {
    const double p = std::exp(discretized_gaussian_log_prob(-1.0 + 2.0 * k / 255.0, m, std::log(sd)));
    if (p > 0) H -= p * std::log(p);
  }
  const double H_bpd = H / std::log(2.0);
  const int64_t N = 1500;
  Tensor x0({N, 1, 2, 2});
  for (int64_t j = 0; j < x0.numel(); j++) {
    const double x = m + sd * normal(RngKey{555, 9}, j);
    const double k = std::min(255.0, std::max(0.0, std::round((x + 1) * 127.5)));
    x0[j] = static_cast<float>(-1.0 + 2.0 * k / 255.0);
  }
  Schedule s = make_schedule("linear", 1000);
  for (VarianceType v : {VarianceType::fixed_large, VarianceType::fixed_small}) {
    CAPTURE(std::string(variance_name(v)));
    VlbResult r = vlb_terms(s, gaussian_oracle_model(s, m, sd, v), x0, 77);
    REQUIRE(r.kl_t.size() == 999u);
    CHECK(r.name == "L_vlb (all T terms)");
    // Paired per image: gap_i = L_vlb(x0_i) - (-log P(x0_i)), whose mean estimates E[L_vlb] - H
    // with a far smaller standard error than either term alone.
    std::vector<double> gap(N, 0.0);
    double gap_mean = 0, s2 = 0;
    for (int64_t i = 0; i < N; i++) {
      gap[i] = r.total_bpd[i];
      for (int64_t j = i * 4; j < (i + 1) * 4; j++) gap[i] += discretized_gaussian_log_prob(x0[j], m, std::log(sd)) / (4 * std::log(2.0));
      gap_mean += gap[i] / N;
    }
    for (double g : gap) s2 += (g - gap_mean) * (g - gap_mean);
    const double se = std::sqrt(s2 / (N - 1) / N);
    MESSAGE(std::string(variance_name(v)) << ": L_vlb = " << r.mean_bpd << " bits/dim, true NLL H = " << H_bpd
                             << " bits/dim, paired gap " << gap_mean << " +- " << se);
    // The bound holds: E[L_vlb] - H >= 0, up to k = 4 standard errors of the paired estimate.
    CHECK(gap_mean >= -4 * se);
    // And it is tight to a stated margin. The oracle is exact for continuous data; the gap comes
    // from the fixed variance, L_T (~1e-5 nats) and the 8-bit quantization, which the oracle
    // ignores: at small t the noise sqrt(1 - alpha-bar_t) is comparable to the bin width 2/255,
    // so the oracle's mean is off by a fraction of a bin, and the KL divides that error by
    // sigma_t^2 (beta-tilde_t < beta_t, hence the larger gap for fixed small). Both decoders
    // L_0 use sigma_1^2 = beta-tilde_2 (the original code's convention).
    // Measured paired gaps (this seed, N = 1500 images of 4 dims): fixed large 0.15 +- 0.03,
    // fixed small 0.81 +- 0.03 bits/dim. Margins: 0.3 and 1.0 bits/dim (4% and 14% of H).
    const double margin = v == VarianceType::fixed_large ? 0.3 : 1.0;
    CHECK(gap_mean <= margin);
    // Bookkeeping: totals are the sum of the terms; bits/dim = nats / (D ln 2).
    CHECK(r.total_nats[3] == doctest::Approx(r.prior_nats[3] + r.kl_sum_nats[3] + r.decoder_nats[3]).epsilon(1e-12));
    CHECK(r.total_bpd[3] == doctest::Approx(r.total_nats[3] / (4 * std::log(2.0))).epsilon(1e-12));
    // L_T = KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, 1)) in closed form, image 0.
    double LT = 0;
    for (int j = 0; j < 4; j++)
      LT += 0.5 * (-1 - std::log(1 - s.alpha_bar[1000]) + (1 - s.alpha_bar[1000]) + s.alpha_bar[1000] * x0[j] * x0[j]);
    CHECK(r.prior_nats[0] == doctest::Approx(LT).epsilon(1e-4));
  }
}

TEST_CASE("diffusion: a strided VLB is named as such and estimates the full sum") {
  const double m = 0.1, sd = 0.3;
  Schedule s = make_schedule("linear", 1000);
  Tensor x0({200, 1, 1, 1});
  for (int64_t j = 0; j < x0.numel(); j++)
    x0[j] = static_cast<float>(-1.0 + 2.0 * std::round((m + sd * normal(RngKey{556, 9}, j) + 1) * 127.5) / 255.0);
  VlbOptions o;
  o.stride = 10;
  VlbResult strided = vlb_terms(s, gaussian_oracle_model(s, m, sd), x0, 78, o);
  VlbResult full = vlb_terms(s, gaussian_oracle_model(s, m, sd), x0, 78);
  CHECK(strided.name.find("stride 10") != std::string::npos);
  CHECK(strided.name.find("estimate") != std::string::npos);
  // t = 2..11 densely, then the midpoints of the blocks [12, 21], ..., [982, 991], [992, 1000].
  REQUIRE(strided.kl_t.size() == 109u);
  CHECK(strided.kl_t.front() == 996);
  CHECK(strided.kl_count.front() == 9);
  CHECK(strided.kl_t[98] == 17);
  CHECK(strided.kl_count[98] == 10);
  CHECK(strided.kl_t.back() == 2);
  CHECK(strided.kl_count.back() == 1);
  int64_t covered = 0;
  for (int64_t c : strided.kl_count) covered += c;
  CHECK(covered == 999);
  // Same draws at the shared t (keyed by t), so the strided terms are a subset of the full ones.
  CHECK(strided.kl_nats.back()[0] == full.kl_nats.back()[0]);
  REQUIRE(full.kl_t[13] == 987);
  CHECK(strided.kl_t[1] == 987);
  CHECK(strided.kl_nats[1][0] == full.kl_nats[13][0]);
  // The estimate is close to the full sum. Measured: 7.13 vs 7.31 bits/dim (2.5% low: the midpoint
  // of a convex decreasing run of terms underestimates it, and one draw counted for 10 terms adds
  // Monte Carlo noise). Tolerance 5%.
  CHECK(strided.mean_bpd == doctest::Approx(full.mean_bpd).epsilon(0.05));
}

// ---------------------------------------------------------------------------
// Algorithms 1 and 2: bodies and keyed randomness

TEST_CASE("diffusion: training_step is Algorithm 1 with t and eps keyed by (seed, step, i)") {
  Schedule s = make_schedule("linear", 1000);
  Tensor w = randn({1, 1, 2, 2}, 71);
  // A toy model: eps_theta = 0.5 x_t + w (w repeated over the batch).
  TapeEpsFn model = [&](Tape& tape, const Var& x_t, const std::vector<int64_t>&) {
    const int64_t N = x_t->value.size(0);
    Tensor wb({N, 1, 2, 2});
    for (int64_t i = 0; i < N; i++)
      for (int j = 0; j < 4; j++) wb[i * 4 + j] = w[j];
    return add(tape, scale(tape, x_t, 0.5f), constant(wb));
  };
  Tensor x0 = randn({4, 1, 2, 2}, 72, 0.5f);
  Tape tape;
  TrainStep st = training_step(tape, s, model, x0, 42, 7);
  // Line 5 by hand: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, loss = mean (eps - eps_theta)^2.
  double loss = 0;
  for (int64_t i = 0; i < 4; i++) {
    CHECK(st.t[i] >= 1);
    CHECK(st.t[i] <= 1000);
    for (int64_t j = i * 4; j < (i + 1) * 4; j++) {
      const double xt = s.sqrt_alpha_bar[st.t[i]] * x0[j] + s.sqrt_one_minus_alpha_bar[st.t[i]] * st.eps[j];
      CHECK(st.x_t[j] == doctest::Approx(xt).epsilon(1e-6));
      const double d = st.eps[j] - (0.5 * xt + w[j % 4]);
      loss += d * d / 16;
    }
  }
  CHECK(st.loss->value[0] == doctest::Approx(loss).epsilon(1e-5));
  // Keyed randomness: the first two samples of a batch of 2 get the same t and eps as in the
  // batch of 4; samples 2..3 with first_index = 2 too; another step draws differently.
  Tape t2 = Tape::no_grad();
  Tensor head = Tensor::from({2, 1, 2, 2}, std::vector<float>(x0.data(), x0.data() + 8));
  Tensor tail = Tensor::from({2, 1, 2, 2}, std::vector<float>(x0.data() + 8, x0.data() + 16));
  TrainStep a = training_step(t2, s, model, head, 42, 7);
  TrainStep b = training_step(t2, s, model, tail, 42, 7, /*first_index=*/2);
  CHECK(a.t[0] == st.t[0]);
  CHECK(a.t[1] == st.t[1]);
  CHECK(b.t[0] == st.t[2]);
  CHECK(b.t[1] == st.t[3]);
  for (int j = 0; j < 8; j++) {
    CHECK(a.eps[j] == st.eps[j]);
    CHECK(b.eps[j] == st.eps[8 + j]);
  }
  TrainStep c = training_step(t2, s, model, x0, 42, 8);
  int same = 0;
  for (int j = 0; j < 16; j++) same += c.eps[j] == st.eps[j];
  CHECK(same == 0);
  // Line 5 alone with the same t and eps gives the same loss.
  CHECK(training_loss(t2, s, model, x0, st.t, st.eps).loss->value[0] == st.loss->value[0]);
}

TEST_CASE("diffusion: Algorithm 1 draws t uniformly from 1..T") {
  Schedule s = make_schedule("linear", 10);
  const int64_t N = 20000;
  Tape tape = Tape::no_grad();
  TrainStep st = training_step(tape, s, [](Tape&, const Var& x_t, const std::vector<int64_t>&) { return x_t; },
                               Tensor({N, 1, 1, 1}), 3, 0);
  // Line 3 is uniform_timesteps on the step's keyed stream.
  CHECK(uniform_timesteps(s, RngKey{3, make_stream(rng_train_t, 0)}, 0, N) == st.t);
  std::map<int64_t, int64_t> count;
  for (int64_t t : st.t) count[t]++;
  REQUIRE(count.size() == 10u);
  CHECK(count.begin()->first == 1);
  CHECK(count.rbegin()->first == 10);
  // Each count is Binomial(N, 1/10): mean 2000, sd sqrt(N p (1 - p)) ~ 42; k = 4.
  for (auto [t, c] : count) {
    CAPTURE(t);
    CHECK(std::fabs(c - 2000.0) <= 4 * std::sqrt(N * 0.1 * 0.9));
  }
  // And eps has unit variance.
  double mean, var;
  moments(st.eps, mean, var);
  CHECK(std::fabs(mean) <= 4 * std::sqrt(1.0 / N));
  CHECK(std::fabs(var - 1) <= 4 * std::sqrt(2.0 / N));
}

TEST_CASE("diffusion: sample gives the same images for any batch split and keeps chosen x_t") {
  Schedule s = make_schedule("cosine", 50);
  ModelFn oracle = gaussian_oracle_model(s, -0.2, 0.4);
  SampleOptions o;
  o.keep_t = {50, 25, 0};
  SampleResult whole = sample(s, oracle, {6, 1, 2, 3}, 9, o);
  SampleResult head = sample(s, oracle, {4, 1, 2, 3}, 9);
  o.first_index = 4;
  SampleResult tail = sample(s, oracle, {2, 1, 2, 3}, 9, o);
  for (int64_t j = 0; j < 24; j++) CHECK(head.x0[j] == whole.x0[j]);
  for (int64_t j = 0; j < 12; j++) CHECK(tail.x0[j] == whole.x0[24 + j]);
  REQUIRE(whole.kept_t == std::vector<int64_t>{50, 25, 0});
  REQUIRE(tail.kept_t == std::vector<int64_t>{50, 25, 0});
  CHECK(head.kept_t.empty());
  for (int64_t j = 0; j < 36; j++) CHECK(whole.chain[2][j] == whole.x0[j]);
  // x_T is the keyed N(0, I) draw of Algorithm 2 line 1.
  CHECK(whole.chain[0][7] == normal(RngKey{9, make_stream(rng_sample_xT)}, 7));
  CHECK(tail.chain[0][1] == normal(RngKey{9, make_stream(rng_sample_xT)}, 4 * 6 + 1));
  // A different seed gives different images.
  CHECK(sample(s, oracle, {1, 1, 2, 3}, 10).x0[0] != whole.x0[0]);
}

TEST_CASE("diffusion: misuse throws an error naming the op and the values") {
  Schedule s = make_schedule("linear", 100);
  Tensor x = randn({2, 1, 2, 2}, 81);
  CHECK_THROWS_WITH_AS(q_sample(s, x, {0, 5}, x), doctest::Contains("q_sample: timestep t = 0 is outside 1..T = 1..100"), Error);
  CHECK_THROWS_WITH_AS(q_sample(s, x, {1, 101}, x), doctest::Contains("t = 101"), Error);
  CHECK_THROWS_WITH_AS(q_sample(s, x, {1}, x), doctest::Contains("1 timesteps for a batch of N = 2"), Error);
  CHECK_THROWS_WITH_AS(q_sample(s, x, {1, 2}, randn({2, 1, 2, 3}, 1)), doctest::Contains("must have the same shape"), Error);
  CHECK_THROWS_AS(q_step(s, x, {1, 2}, randn({1, 1, 2, 2}, 1)), Error);
  CHECK_THROWS_AS(p_sample(s, x, {1, 2}, fixed(s, x, {1, 2}, x), randn({2, 4}, 1)), Error);
  SampleOptions keep_beyond_T;
  keep_beyond_T.keep_t = {101};
  CHECK_THROWS_WITH_AS(sample(s, gaussian_oracle_model(s, 0, 1), {2, 1, 2, 2}, 1, keep_beyond_T),
                       doctest::Contains("keep_t = 101"), Error);
  Tensor big = Tensor::full({1, 1, 1, 1}, 1.5f);
  CHECK_THROWS_WITH_AS(vlb_terms(s, gaussian_oracle_model(s, 0, 1), big, 1), doctest::Contains("outside [-1, 1]"), Error);
  CHECK_THROWS_WITH_AS(parse_variance("huge"), doctest::Contains("unknown variance 'huge'"), Error);
  CHECK_THROWS_WITH_AS(parse_variance("learned_range"), doctest::Contains("unknown variance"), Error);
  CHECK(parse_variance("fixed_small") == VarianceType::fixed_small);
  // A model returning the wrong shape is caught where its output is used.
  EpsFn bad = [](const Tensor& x_t, const std::vector<int64_t>&) { return Tensor({x_t.size(0), 3}); };
  CHECK_THROWS_WITH_AS(sample(s, fixed_variance_model(s, bad, VarianceType::fixed_large), {2, 1, 2, 2}, 1),
                       doctest::Contains("eps_theta"), Error);
}

// ===========================================================================
// Derivation-map identities (docs/derivation.md): the formulas of the forward-process and
// bound slides that had no test of their own, each against a value computed here from
// beta_t alone. Appended as one block; nothing above depends on it.

namespace {

// log N(x; m, v), in double.
double log_normal(double x, double m, double v) {
  return -0.5 * (std::log(2 * M_PI * v) + (x - m) * (x - m) / v);
}

}  // namespace

TEST_CASE("diffusion: every named schedule keeps 0 < beta_t < 1, and other betas are rejected") {
  for (const std::string& name : schedule_names()) {
    for (int64_t T : {1, 2, 10, 1000, 4000}) {
      Schedule s = make_schedule(name, T);
      for (int64_t t = 1; t <= T; t++) {
        CHECK(s.beta[t] > 0.0);
        CHECK(s.beta[t] < 1.0);
        // Then alpha-bar_t falls strictly and stays in (0, 1).
        CHECK(s.alpha_bar[t] < s.alpha_bar[t - 1]);
        CHECK(s.alpha_bar[t] > 0.0);
      }
    }
  }
  CHECK_THROWS_WITH_AS(schedule_from_betas("x", {0.1, 0.0}), doctest::Contains("beta_2 = 0 must be in (0, 1)"), Error);
  CHECK_THROWS_WITH_AS(schedule_from_betas("x", {-0.1}), doctest::Contains("beta_1 = -0.1 must be in (0, 1)"), Error);
  CHECK_THROWS_WITH_AS(schedule_from_betas("x", {0.2, 1.5}), doctest::Contains("beta_2 = 1.5 must be in (0, 1)"), Error);
}

TEST_CASE("diffusion: two forward steps merge into one with sqrt(alpha_t alpha_{t-1}) (slide Forward 2/2)") {
  // x_t = sqrt(alpha_t) (sqrt(alpha_{t-1}) x_{t-2} + sqrt(beta_{t-1}) eps1) + sqrt(beta_t) eps2:
  // the x_{t-2} coefficient is sqrt(alpha_t alpha_{t-1}), and the two independent noises add to
  // one of variance alpha_t beta_{t-1} + beta_t = 1 - alpha_t alpha_{t-1}.
  Schedule s = make_schedule("cosine", 50);
  const int64_t N = 3;
  Tensor x = randn({N, 1, 2, 2}, 501), zero({N, 1, 2, 2}), one = Tensor::full({N, 1, 2, 2}, 1.0f);
  for (int64_t t : {2, 3, 26, 50}) {
    const double a_t = 1.0 - s.beta[t], a_prev = 1.0 - s.beta[t - 1];
    const double merged = std::sqrt(a_t * a_prev);
    CHECK(s.alpha_bar[t] / s.alpha_bar[t - 2] == doctest::Approx(a_t * a_prev).epsilon(1e-12));
    Tensor two = q_step(s, q_step(s, x, all_t(N, t - 1), zero), all_t(N, t), zero);
    for (int64_t j = 0; j < x.numel(); j++) CHECK(two[j] == doctest::Approx(merged * x[j]).epsilon(1e-6));
    // The noise coefficients, read off one unit of eps at a time from x_{t-2} = 0.
    const double c1 = q_step(s, q_step(s, zero, all_t(N, t - 1), one), all_t(N, t), zero)[0];
    const double c2 = q_step(s, q_step(s, zero, all_t(N, t - 1), zero), all_t(N, t), one)[0];
    CHECK(c1 * c1 + c2 * c2 == doctest::Approx(1.0 - a_t * a_prev).epsilon(1e-5));
  }
}

TEST_CASE("diffusion: prod q(x_t|x_{t-1}) equals q(x_T|x_0) prod q(x_{t-1}|x_t, x_0) on any path (slides 4-7)") {
  // The density of a whole forward path, the product of the steps (Eq. 2), rewritten by Bayes
  // with x_0 given (slides 5-6) as q(x_T|x_0) times the posteriors of t = 2..T: an identity at
  // every path, which is what turns the bound of slide 4 into the KL sum of slide 7 (Eq. 5).
  // The left side uses beta_t only; the right side is q_mean_variance and q_posterior.
  for (const std::string& name : {std::string("linear"), std::string("cosine")}) {
    const int64_t T = 6, N = 2;
    Schedule s = make_schedule(name, T);
    Tensor x0 = randn({N, 1, 2, 2}, 601, 0.5f);
    const int64_t D = x0.numel() / N;
    std::vector<Tensor> x{x0};  // the path x_0 .. x_T, drawn with q_step
    for (int64_t t = 1; t <= T; t++) x.push_back(q_step(s, x.back(), all_t(N, t), randn({N, 1, 2, 2}, 610 + t)));
    std::vector<double> lhs(N, 0.0), rhs(N, 0.0);
    for (int64_t t = 1; t <= T; t++)
      for (int64_t i = 0; i < N; i++)
        for (int64_t j = i * D; j < (i + 1) * D; j++)
          lhs[i] += log_normal(x[t][j], std::sqrt(1.0 - s.beta[t]) * x[t - 1][j], s.beta[t]);
    Gaussian qT = q_mean_variance(s, x0, all_t(N, T));
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = i * D; j < (i + 1) * D; j++) rhs[i] += log_normal(x[T][j], qT.mean[j], qT.variance[j]);
    for (int64_t t = 2; t <= T; t++) {
      Gaussian post = q_posterior(s, x0, x[t], all_t(N, t));
      for (int64_t i = 0; i < N; i++)
        for (int64_t j = i * D; j < (i + 1) * D; j++) rhs[i] += log_normal(x[t - 1][j], post.mean[j], post.variance[j]);
    }
    // The q(x_1|x_0) of the first step cancels against the telescoped ratio (slide 6): nothing is left over.
    for (int64_t i = 0; i < N; i++) CHECK(rhs[i] == doctest::Approx(lhs[i]).epsilon(1e-4));
  }
}

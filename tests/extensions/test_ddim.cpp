// Tests for ddpm/extensions/ddim.h: the respaced sequences (against numpy/diffusers' values), eta = 1
// on the full sequence is DDPM with beta-tilde, the encode/decode round trip for the
// Gaussian-data oracle, and DDIM sampling reproducing the oracle's data distribution.
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/extensions/ddim.h"
#include "tests/oracle.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gaussian_oracle;
using testing::randn;

TEST_CASE("ddim: respaced sequences equal diffusers' linspace and trailing spacings") {
  // Fixtures from numpy (see ddim.h): linspace(0, T-1, S).round() + 1 and round(arange(T, 0, -T/S)).
  CHECK(respace_timesteps(10, 4, Spacing::linspace) == std::vector<int64_t>{1, 4, 7, 10});
  CHECK(respace_timesteps(10, 4, Spacing::trailing) == std::vector<int64_t>{2, 5, 8, 10});  // 7.5 -> 8, 2.5 -> 2
  auto head = [](std::vector<int64_t> v) { return std::vector<int64_t>(v.begin(), v.begin() + 6); };
  CHECK(head(respace_timesteps(1000, 10, Spacing::linspace)) == std::vector<int64_t>{1, 112, 223, 334, 445, 556});
  CHECK(head(respace_timesteps(1000, 10, Spacing::trailing)) == std::vector<int64_t>{100, 200, 300, 400, 500, 600});
  CHECK(head(respace_timesteps(1000, 16, Spacing::linspace)) == std::vector<int64_t>{1, 68, 134, 201, 267, 334});
  CHECK(head(respace_timesteps(1000, 16, Spacing::trailing)) == std::vector<int64_t>{62, 125, 188, 250, 312, 375});
  CHECK(head(respace_timesteps(1000, 50, Spacing::linspace)) == std::vector<int64_t>{1, 21, 42, 62, 83, 103});
  CHECK(head(respace_timesteps(1000, 50, Spacing::trailing)) == std::vector<int64_t>{20, 40, 60, 80, 100, 120});
  for (Spacing sp : {Spacing::linspace, Spacing::trailing}) {
    for (int64_t S : {1, 10, 20, 50, 100, 1000}) {
      auto tau = respace_timesteps(1000, S, sp);
      REQUIRE(static_cast<int64_t>(tau.size()) == S);
      CHECK(tau.back() == 1000);  // every sequence starts the sampler at x_T
      for (size_t k = 1; k < tau.size(); k++) CHECK(tau[k] > tau[k - 1]);
      if (S == 1000)
        for (int64_t k = 0; k < S; k++) CHECK(tau[k] == k + 1);  // the full sequence is 1..T
    }
  }
  CHECK(respace_timesteps(1000, 1, Spacing::linspace) == std::vector<int64_t>{1000});
  CHECK(parse_spacing("trailing") == Spacing::trailing);
  CHECK_THROWS_AS(parse_spacing("leading"), Error);
  CHECK_THROWS_AS(respace_timesteps(10, 11, Spacing::linspace), Error);
  CHECK_THROWS_AS(respace_timesteps(10, 0, Spacing::trailing), Error);
}

TEST_CASE("ddim: eta = 1 on the full sequence is DDPM's reverse step with sigma^2 = beta-tilde") {
  for (const char* name : {"linear", "cosine"}) {
    Schedule s = make_schedule(name, 200);
    for (int64_t t = 2; t <= s.T; t++)
      // Same quantity by two formulas in double: a few ulps.
      CHECK(ddim_sigma2(s, t, t - 1, 1.0) == doctest::Approx(s.posterior_variance[t]).epsilon(1e-10));
    CHECK(ddim_sigma2(s, 1, 0, 1.0) == 0.0);  // alpha-bar_0 = 1: no noise on the last step, as Algorithm 2
    CHECK(ddim_sigma2(s, 50, 49, 0.0) == 0.0);
    CHECK(ddim_sigma2(s, 50, 49, 0.5) == doctest::Approx(0.25 * s.posterior_variance[50]).epsilon(1e-10));
    // And the whole step: the same x_{t-1} as p_sample with fixed_small for the same eps and z.
    Tensor x_t = randn({3, 1, 2, 2}, 31), eps = randn({3, 1, 2, 2}, 32), z = randn({3, 1, 2, 2}, 33);
    for (int64_t t : {1, 2, 10, 100, 200}) {
      CAPTURE(t);
      Tensor ddim = ddim_step(s, x_t, t, t - 1, eps, 1.0, z);
      const std::vector<int64_t> tv(3, t);
      Tensor ddpm = p_sample(s, x_t, tv, ModelPrediction{eps, fixed_sigma(s, VarianceType::fixed_small, x_t, tv)}, z);
      // Float32 formulas in different orders; cosine's t = 200 has alpha-bar ~ 1e-9, where
      // pred_x0 = x_t / sqrt(alpha-bar) is ~3e4 and float rounding of it is ~3e-3 before the
      // sqrt(alpha-bar_{t-1}) factor brings it back: 1e-4 absolute covers both.
      testing::check_allclose("ddim(eta=1) vs p_sample(fixed_small)", ddim, ddpm, 1e-4, 1e-4);
    }
  }
}

TEST_CASE("ddim: encode then decode returns x_0 for the Gaussian oracle, and encode follows the exact ODE") {
  Schedule s = make_schedule("linear", 1000);
  const double m = 0.2, sd = 0.5;
  EpsFn oracle = gaussian_oracle(s, m, sd);
  Tensor x0 = randn({4, 1, 3, 3}, 41, static_cast<float>(sd));
  for (int64_t j = 0; j < x0.numel(); j++) x0[j] += static_cast<float>(m);
  // The probability-flow ODE of Gaussian data maps x_0 to
  // x_T = sqrt(ab_T) m + sqrt(ab_T s^2 + 1 - ab_T) (x_0 - m) / s (the standardized value is kept).
  const double ab = s.alpha_bar[s.T];
  Tensor exact(x0.shape());
  for (int64_t j = 0; j < x0.numel(); j++)
    exact[j] = static_cast<float>(std::sqrt(ab) * m + std::sqrt(ab * sd * sd + 1 - ab) * (x0[j] - m) / sd);
  struct Case {
    int64_t steps;
    double tol_trip, tol_ode;
  };
  // Euler on the ODE: errors O(1/S). Measured max errors at S = 1000 / 100 / 20: round trip
  // 3.5e-3 / 3.5e-2 / 0.17, encode vs exact 1.9e-3 / 1.6e-2 / 5.3e-2 (values ~1): the bounds are
  // 2x those, and shrink 10x with 10x the steps, as first order predicts.
  for (Case c : {Case{1000, 7e-3, 4e-3}, Case{100, 7e-2, 3.5e-2}, Case{20, 0.35, 0.11}}) {
    CAPTURE(c.steps);
    auto tau = respace_timesteps(s.T, c.steps, Spacing::trailing);
    Tensor x_T = ddim_encode(s, oracle, x0, tau);
    Tensor back = ddim_decode(s, oracle, x_T, tau);
    double trip = 0, ode = 0;
    for (int64_t j = 0; j < x0.numel(); j++) {
      trip = std::max(trip, std::fabs(double(back[j]) - x0[j]));
      ode = std::max(ode, std::fabs(double(x_T[j]) - exact[j]));
    }
    std::printf("ddim: %lld steps: round trip max error %.3g, encode vs exact ODE %.3g\n",
                static_cast<long long>(c.steps), trip, ode);
    testing::check_allclose("decode(encode(x0))", back, x0, c.tol_trip, 0);
    testing::check_allclose("encode(x0) vs the exact ODE map", x_T, exact, c.tol_ode, 0);
  }
  // The decoder is deterministic DDIM sampling from the given x_T.
  DdimOptions o;
  o.steps = 20;
  SampleResult r = ddim_sample(s, oracle, {2, 1, 2, 2}, 5, o);
  Tensor x_T({2, 1, 2, 2});
  fill_normal(x_T.data(), x_T.numel(), RngKey{5, make_stream(rng_sample_xT)});
  Tensor d = ddim_decode(s, oracle, x_T, respace_timesteps(s.T, 20, Spacing::trailing));
  for (int64_t j = 0; j < d.numel(); j++) CHECK(d[j] == r.x0[j]);
}

TEST_CASE("ddim: deterministic and stochastic DDIM reproduce the oracle's N(m, s^2)") {
  Schedule s = make_schedule("linear", 1000);
  const double m = -0.3, sd = 0.6;
  EpsFn oracle = gaussian_oracle(s, m, sd);
  const int64_t N = 4000;
  // On the full sequence both are exact in the limit: eta = 0 follows the probability-flow ODE
  // (whose map is exact for the oracle), eta = 1 is DDPM with beta-tilde. With few steps both
  // lose variance, since pred_x0 is E[x_0 | x_t] and not a draw (measured at 50 steps, eta = 0:
  // 0.32 for 0.36): quality versus steps is what README's table reports.
  for (auto [eta, steps] : {std::pair<double, int64_t>{0.0, 1000}, {1.0, 1000}}) {
    for (Spacing sp : {Spacing::linspace, Spacing::trailing}) {
      CAPTURE(eta);
      CAPTURE(spacing_name(sp));
      DdimOptions o;
      o.steps = steps;
      o.eta = eta;
      o.spacing = sp;
      Tensor x = ddim_sample(s, oracle, {N, 1, 1, 1}, 17, o).x0;
      double mean = 0, var = 0;
      for (int64_t j = 0; j < N; j++) mean += x[j] / N;
      for (int64_t j = 0; j < N; j++) var += (x[j] - mean) * (x[j] - mean) / (N - 1);
      std::printf("ddim: eta %g, %lld steps, %s: mean %.4f (want %.4f), var %.4f (want %.4f)\n", eta,
                  static_cast<long long>(steps), spacing_name(sp), mean, m, var, sd * sd);
      // 4 standard errors (sd/sqrt(N) ~ 0.0095 for the mean, sd^2 sqrt(2/N) ~ 0.008 for the
      // variance), plus 0.01 for 50 steps of discretization.
      CHECK(std::fabs(mean - m) <= 4 * sd / std::sqrt(N) + 0.01);
      CHECK(std::fabs(var - sd * sd) <= 4 * sd * sd * std::sqrt(2.0 / N) + 0.01);
    }
  }
}

TEST_CASE("ddim: batch split invariance, keep_t, eta = 0 ignores the noise, misuse errors") {
  Schedule s = make_schedule("cosine", 100);
  EpsFn oracle = gaussian_oracle(s, 0.1, 0.4);
  DdimOptions o;
  o.steps = 10;
  o.eta = 0.5;
  o.keep_t = {100, 0};
  SampleResult whole = ddim_sample(s, oracle, {5, 1, 2, 2}, 3, o);
  o.first_index = 3;
  SampleResult tail = ddim_sample(s, oracle, {2, 1, 2, 2}, 3, o);
  for (int64_t j = 0; j < 8; j++) CHECK(tail.x0[j] == whole.x0[12 + j]);
  REQUIRE(whole.kept_t == std::vector<int64_t>{100, 0});
  for (int64_t j = 0; j < 20; j++) CHECK(whole.chain[1][j] == whole.x0[j]);
  // eta = 0 draws no noise: a different seed changes x_T only, and with the same x_T the result.
  Tensor x_t = randn({2, 1, 2, 2}, 1), eps = randn({2, 1, 2, 2}, 2);
  Tensor a = ddim_step(s, x_t, 50, 40, eps, 0.0, Tensor()), b = ddim_step(s, x_t, 50, 40, eps, 0.0, randn({2, 1, 2, 2}, 3));
  for (int64_t j = 0; j < 8; j++) CHECK(a[j] == b[j]);
  CHECK_THROWS_AS(ddim_step(s, x_t, 50, 40, eps, 0.5, Tensor()), Error);  // eta > 0 needs z
  CHECK_THROWS_AS(ddim_step(s, x_t, 50, 50, eps, 0.0, Tensor()), Error);  // s < t
  o.keep_t = {55};
  CHECK_THROWS_AS(ddim_sample(s, oracle, {1, 1, 2, 2}, 3, o), Error);     // not on the sequence
}

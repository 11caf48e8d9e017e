// Tests for ddpm/diffusion/schedule.h: every schedule against an independent evaluation of its
// formula, the derived quantities against their definitions, and the bounds.
#include <cmath>
#include <map>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/gaussian.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/ops/elementwise.h"
#include "tests/diffusion/testing.h"
#include "tests/oracle.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

TEST_CASE("schedule: schedules match an independent evaluation of their formulas") {
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

TEST_CASE("schedule: make_schedule rejects unknown names and T outside 1..kMaxT with a clear error") {
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

TEST_CASE("schedule: derived quantities match their definitions") {
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

TEST_CASE("schedule: every named schedule keeps 0 < beta_t < 1, and other betas are rejected") {
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

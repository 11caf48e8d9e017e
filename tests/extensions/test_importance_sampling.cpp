// Tests for ddpm/extensions/importance_sampling.h: uniform until warmed up, then p_t ∝ sqrt(E[L_t^2]) mixed
// with 0.001 uniform; the drawn t follow p (chi-square), weights are 1 / (T p_t), the history
// keeps the last 10 values, and the state round-trips exactly.
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/extensions/importance_sampling.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("timestep_sampler: uniform until every t has 10 losses, then p_t ∝ sqrt(E[L_t^2])") {
  const int64_t T = 4;
  TimestepSampler s(T);
  for (int64_t t = 1; t <= T; t++) CHECK(s.probabilities()[t] == 1.0 / T);
  // 9 values for t = 1..4, then a 10th for t = 1..3 only: still uniform.
  for (int k = 0; k < 9; k++) s.update({1, 2, 3, 4}, {1.0, 2.0, 3.0, 4.0});
  s.update({1, 2, 3}, {1.0, 2.0, 3.0});
  CHECK_FALSE(s.warmed_up());
  CHECK(s.probabilities()[2] == 1.0 / T);
  // The 10th value for t = 4 is 0: E[L_4^2] = 9 * 16 / 10.
  s.update({4}, {0.0});
  REQUIRE(s.warmed_up());
  std::vector<double> want{0, 1, 2, 3, std::sqrt(9 * 16 / 10.0)};
  double total = want[1] + want[2] + want[3] + want[4];
  std::vector<double> p = s.probabilities();
  for (int64_t t = 1; t <= T; t++)
    CHECK(p[t] == doctest::Approx((1 - 1e-3) * want[t] / total + 1e-3 / T).epsilon(1e-12));
  // Only the last 10 are kept: 10 more values of 5 for t = 1 replace all its history.
  for (int k = 0; k < 10; k++) s.update({1}, {5.0});
  want[1] = 5;
  total = want[1] + want[2] + want[3] + want[4];
  CHECK(s.probabilities()[1] == doctest::Approx((1 - 1e-3) * 5 / total + 1e-3 / T).epsilon(1e-12));
  CHECK_THROWS_AS(s.update({5}, {1.0}), Error);
}

TEST_CASE("timestep_sampler: drawn t follow p (chi-square) with weights 1 / (T p_t), deterministically") {
  const int64_t T = 6;
  TimestepSampler s(T);
  const std::vector<double> L{0, 1.0, 0.5, 3.0, 0.1, 2.0, 0.0};  // L_6 = 0: only the uniform mix
  for (int k = 0; k < 10; k++) s.update({1, 2, 3, 4, 5, 6}, {L[1], L[2], L[3], L[4], L[5], L[6]});
  const std::vector<double> p = s.probabilities();
  const int64_t N = 200000;
  std::vector<int64_t> t;
  std::vector<double> w;
  s.sample(RngKey{3, 9}, 0, N, t, w);
  std::vector<double> count(T + 1, 0);
  for (int64_t i = 0; i < N; i++) {
    REQUIRE((t[i] >= 1 && t[i] <= T));
    count[t[i]]++;
    CHECK(w[i] == doctest::Approx(1.0 / (T * p[t[i]])).epsilon(1e-12));
  }
  double chi2 = 0;
  for (int64_t k = 1; k <= T; k++) chi2 += (count[k] - N * p[k]) * (count[k] - N * p[k]) / (N * p[k]);
  // 5 degrees of freedom: P(chi2 > 25.7) = 1e-4 for a correct sampler; a wrong p (e.g. ∝ E[L^2]
  // or uniform) gives chi2 in the thousands at this N.
  CHECK(chi2 < 25.7);
  CHECK(count[6] > 0);  // the uniform mix keeps t = 6 alive: expected N * 1e-3 / 6 ~ 33
  // The importance-weighted mean of L_t is unbiased for the uniform mean (here exactly, in expectation).
  double est = 0, uniform_mean = 0;
  for (int64_t i = 0; i < N; i++) est += w[i] * L[t[i]] / N;
  for (int64_t k = 1; k <= T; k++) uniform_mean += L[k] / T;
  CHECK(est == doctest::Approx(uniform_mean).epsilon(0.02));  // Monte Carlo, relative sd ~ 0.2%
  // Deterministic in (key, index): a batch split gives the same draws.
  std::vector<int64_t> t2;
  std::vector<double> w2;
  s.sample(RngKey{3, 9}, 1000, 5, t2, w2);
  for (int64_t i = 0; i < 5; i++) CHECK(t2[i] == t[1000 + i]);
}

TEST_CASE("timestep_sampler: state() and set_state() round-trip the history exactly") {
  TimestepSampler a(5), b(5);
  for (int k = 0; k < 13; k++) a.update({1 + k % 5, 2}, {0.1 * k + 0.01, 1.0 / (k + 1)});
  Tensor h, c;
  a.state(h, c);
  CHECK(h.shape() == Shape{5, 10});
  b.set_state(h, c);
  CHECK(a.probabilities() == b.probabilities());
  Tensor h2, c2;
  b.state(h2, c2);
  CHECK(h2.to_vector() == h.to_vector());
  CHECK(c2.to_vector() == c.to_vector());
  CHECK_THROWS_AS(b.set_state(Tensor({4, 10}), Tensor({4})), Error);
}

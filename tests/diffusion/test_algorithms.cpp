// Tests for ddpm/diffusion/algorithms.h: Algorithm 1 line by line and its keyed draws,
// Algorithm 2 against the exact law it gives with the Gaussian oracle, batch-split invariance.
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

TEST_CASE("algorithms: Algorithm 2 with the Gaussian oracle reproduces N(m, s^2)") {
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

TEST_CASE("algorithms: training_step is Algorithm 1 with t and eps keyed by (seed, step, i)") {
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

TEST_CASE("algorithms: Algorithm 1 draws t uniformly from 1..T") {
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

TEST_CASE("algorithms: sample gives the same images for any batch split and keeps chosen x_t") {
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

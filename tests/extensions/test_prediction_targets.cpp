// Tests for ddpm/extensions/prediction_targets.h: the eps / x0 / v conversions (round trips and identities), the
// training option --predict, and sampling through as_eps_fn.
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/extensions/objectives.h"
#include "ddpm/extensions/prediction_targets.h"
#include "tests/oracle.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

TEST_CASE("targets: eps, x0 and v convert into each other, and v satisfies its identities") {
  Schedule s = make_schedule("cosine", 1000);
  const int64_t N = 5;
  Tensor x0 = randn({N, 1, 3, 3}, 1), eps = randn({N, 1, 3, 3}, 2);
  const std::vector<int64_t> t{1, 10, 300, 700, 990};
  Tensor x_t = q_sample(s, x0, t, eps);
  Tensor v = v_from_eps_x0(s, t, eps, x0);
  // Float32 conversions of O(1) values; eps_from_x0 divides by sqrt(1 - ab) = 0.0064 at t = 1 of
  // the cosine schedule, which multiplies x_t's rounding (~6e-8) by ~160: 1e-4 covers that,
  // and x0_from_eps at t = 990 divides by sqrt(ab) ~ 0.02, the same order.
  testing::check_allclose("x0 from (x_t, eps)", predict_x0_from_eps(s, x_t, t, eps), x0, 1e-4, 1e-4);
  testing::check_allclose("eps from (x_t, x0)", eps_from_x0(s, x_t, t, x0), eps, 2e-4, 1e-4);
  testing::check_allclose("x0 from (x_t, v)", x0_from_v(s, x_t, t, v), x0, 1e-5, 1e-5);
  testing::check_allclose("eps from (x_t, v)", eps_from_v(s, x_t, t, v), eps, 1e-5, 1e-5);
  // Identities, per sample: with a = sqrt(ab), b = sqrt(1 - ab) (a^2 + b^2 = 1):
  //   v = (a x_t - x_0) / b   and   ||x_t||^2 + ||v||^2 = ||x_0||^2 + ||eps||^2 (a rotation).
  const int64_t D = 9;
  for (int64_t i = 0; i < N; i++) {
    const double a = s.sqrt_alpha_bar[t[i]], b = s.sqrt_one_minus_alpha_bar[t[i]];
    double lhs = 0, rhs = 0;
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      CHECK(v[j] == doctest::Approx((a * x_t[j] - x0[j]) / b).epsilon(1e-3).scale(1.0));
      lhs += double(x_t[j]) * x_t[j] + double(v[j]) * v[j];
      rhs += double(x0[j]) * x0[j] + double(eps[j]) * eps[j];
    }
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-5));  // float rounding of O(10) sums
  }
  // training_target and eps_from_prediction agree with the named functions.
  for (PredictionTarget p : {PredictionTarget::eps, PredictionTarget::x0, PredictionTarget::v}) {
    CAPTURE(target_name(p));
    Tensor target = training_target(p, s, x0, eps, t);
    testing::check_allclose("eps_from_prediction(target)", eps_from_prediction(p, s, x_t, t, target), eps, 2e-4, 1e-4);
    CHECK(parse_target(target_name(p)) == p);
  }
  CHECK_THROWS_AS(parse_target("score"), Error);
}

TEST_CASE("targets: the objective with --predict regresses the chosen target; sampling converts to eps") {
  Schedule s = make_schedule("linear", 100);
  Tensor x0 = randn({4, 1, 2, 2}, 5, 0.5f);
  // A model that returns a fixed tensor Y: the loss is then mean((target - Y)^2), checked by hand.
  Tensor Y = randn({4, 1, 2, 2}, 6);
  TapeEpsFn fixed = [&](Tape& tape, const Var& x_t, const std::vector<int64_t>&) { return scale(tape, add(tape, scale(tape, x_t, 0.0f), constant(Y)), 1.0f); };
  for (PredictionTarget p : {PredictionTarget::eps, PredictionTarget::x0, PredictionTarget::v}) {
    CAPTURE(target_name(p));
    Objective o;
    o.predict = p;
    Tape tape;
    ObjectiveStep ts = objective_step(tape, s, fixed, x0, 3, 7, 0, o);
    Tensor target = training_target(p, s, x0, ts.eps, ts.t);
    double want = 0;
    for (int64_t j = 0; j < 16; j++) want += (double(target[j]) - Y[j]) * (double(target[j]) - Y[j]) / 16;
    CHECK(ts.loss->value[0] == doctest::Approx(want).epsilon(1e-6));  // float32 of a double sum
    if (p != PredictionTarget::eps) CHECK_THROWS_AS([&] {
        Objective w = o;
        w.loss = LossType::weighted;
        Tape t2;
        objective_step(t2, s, fixed, x0, 3, 7, 0, w);
      }(), Error);
  }
  // A model predicting x0 or v exactly for the Gaussian oracle samples like the eps oracle.
  EpsFn oracle = testing::gaussian_oracle(s, 0.2, 0.5);
  for (PredictionTarget p : {PredictionTarget::x0, PredictionTarget::v}) {
    EpsFn as_target = [&](const Tensor& x_t, const std::vector<int64_t>& t) {
      Tensor e = oracle(x_t, t);
      Tensor x0_hat = predict_x0_from_eps(s, x_t, t, e);
      return p == PredictionTarget::x0 ? x0_hat : v_from_eps_x0(s, t, e, x0_hat);
    };
    const VarianceType large = VarianceType::fixed_large;
    Tensor a = sample(s, fixed_variance_model(s, oracle, large), {3, 1, 2, 2}, 4).x0;
    Tensor b = sample(s, fixed_variance_model(s, as_eps_fn(s, as_target, p), large), {3, 1, 2, 2}, 4).x0;
    // 100 steps of float32 round trips eps -> target -> eps (x0 at small t amplifies by 1/sqrt(1 - ab)).
    testing::check_allclose("sample via as_eps_fn", b, a, 2e-3, 1e-3);
  }
}

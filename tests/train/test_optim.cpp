#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/train/optim.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("optim: Adam follows torch.optim.Adam's update, checked in double for 3 steps") {
  Parameter p = make_parameter("w", Tensor::from({3}, {0.5f, -1.0f, 2.0f}));
  ParamList ps = {&p};
  AdamConfig cfg;
  Adam adam(ps, cfg);
  double w[3] = {0.5, -1.0, 2.0}, m[3] = {0, 0, 0}, v[3] = {0, 0, 0};
  const double grads[3][3] = {{0.1, -0.2, 3.0}, {0.05, 0.4, -1.0}, {-0.3, 0.0, 2.0}};
  const double lr = 1e-2;
  for (int k = 1; k <= 3; k++) {
    for (int i = 0; i < 3; i++) p.var->grad[i] = static_cast<float>(grads[k - 1][i]);
    adam.step(lr);
    for (int i = 0; i < 3; i++) {
      double g = grads[k - 1][i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      double mhat = m[i] / (1 - std::pow(0.9, k)), vhat = v[i] / (1 - std::pow(0.999, k));
      w[i] -= lr * mhat / (std::sqrt(vhat) + 1e-8);
      // float32 arithmetic on O(1) values: a few ulps per step.
      CHECK(p.var->value[i] == doctest::Approx(w[i]).epsilon(1e-6));
    }
  }
  CHECK(adam.steps() == 3);
  // The first step of Adam moves every coordinate with a nonzero grad by about lr.
}

TEST_CASE("optim: clip_grad_norm scales to max_norm and reports the norm before") {
  Parameter a = make_parameter("a", Tensor({2})), b = make_parameter("b", Tensor({1}));
  a.var->grad[0] = 3.0f;
  a.var->grad[1] = 0.0f;
  b.var->grad[0] = 4.0f;
  double norm = clip_grad_norm({&a, &b}, 1.0);
  CHECK(norm == doctest::Approx(5.0));
  CHECK(a.var->grad[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(b.var->grad[0] == doctest::Approx(0.8).epsilon(1e-5));
  // Below the threshold nothing changes.
  norm = clip_grad_norm({&a, &b}, 10.0);
  CHECK(a.var->grad[0] == doctest::Approx(0.6).epsilon(1e-5));
}

TEST_CASE("optim: warm-up and EMA with its warm-up") {
  CHECK(warmup_lr(1.0, 1, 100) == doctest::Approx(0.01));
  CHECK(warmup_lr(1.0, 500, 100) == 1.0);
  CHECK(warmup_lr(1.0, 3, 0) == 1.0);

  Parameter p = make_parameter("w", Tensor::from({1}, {0.0f}));
  EMA ema({&p}, 0.999);
  p.var->value[0] = 1.0f;
  ema.update({&p});  // d = min(0.999, 1/10) = 0.1: shadow = 0.1*0 + 0.9*1
  CHECK(ema.shadow()[0][0] == doctest::Approx(0.9));
  ema.update({&p});  // d = 2/11
  CHECK(ema.shadow()[0][0] == doctest::Approx(2.0 / 11 * 0.9 + 9.0 / 11));
  ema.swap_into({&p});
  CHECK(p.var->value[0] == doctest::Approx(2.0 / 11 * 0.9 + 9.0 / 11));
  ema.swap_into({&p});
  CHECK(p.var->value[0] == 1.0f);
  CHECK_THROWS_AS(EMA({&p}, 1.0), Error);
  CHECK_THROWS_AS(EMA({&p}, 0.9, 0.5), Error);
}

TEST_CASE("optim: the EMA warm-up W sets how much of the run the average covers") {
  // W = 2: d_k = (1+k)/(2+k), and the shadow after K updates is the plain mean of the
  // starting weights and the K iterates (an independent value: the mean, summed directly).
  const std::vector<float> iterates = {3.0f, -1.0f, 4.0f, 1.5f, -5.0f, 9.0f, 2.0f};
  Parameter p = make_parameter("w", Tensor::from({1}, {100.0f}));
  EMA mean({&p}, 0.999, 2.0);
  double sum = 100.0;
  for (size_t k = 0; k < iterates.size(); k++) {
    p.var->value[0] = iterates[k];
    mean.update({&p});
    sum += iterates[k];
    CHECK(mean.shadow()[0][0] == doctest::Approx(sum / double(k + 2)).epsilon(1e-6));
  }
  // W = 1: no warm-up, the decay from the first update: shadow = d^K s_0 + (1 - d^K) p for a
  // constant p.
  p.var->value[0] = 0.0f;
  EMA plain({&p}, 0.5, 1.0);
  p.var->value[0] = 1.0f;
  for (int k = 0; k < 3; k++) plain.update({&p});
  CHECK(plain.shadow()[0][0] == doctest::Approx(1.0 - 0.125));
  // Past the crossover the cap holds: W = 10 reaches 0.5 at k = 8, so update 9 uses 0.5.
  p.var->value[0] = 0.0f;
  EMA capped({&p}, 0.5, 10.0);
  capped.set_updates(9);
  p.var->value[0] = 1.0f;
  capped.update({&p});
  CHECK(capped.shadow()[0][0] == doctest::Approx(0.5));
}

TEST_CASE("optim: warm-up, then a decaying schedule lands at floor x lr at the target step") {
  // The learning rate the optimizer sees: warm-up, then cosine down to floor x lr at --steps.
  // Warm-up 2 steps, target step 6, floor 0.1, at the training tests' learning rate.
  const LrSchedule cosine = LrSchedule::cosine;
  const double lr = 3e-3;
  CHECK(scheduled_lr(lr, 1, 2, cosine, 0.1, 6) == lr * 0.5);  // warm-up
  CHECK(scheduled_lr(lr, 2, 2, cosine, 0.1, 6) == lr);
  CHECK(scheduled_lr(lr, 4, 2, cosine, 0.1, 6) == doctest::Approx(lr * (0.1 + 0.9 * 0.5)).epsilon(1e-15));
  CHECK(scheduled_lr(lr, 6, 2, cosine, 0.1, 6) == doctest::Approx(lr * 0.1).epsilon(1e-15));
  CHECK(scheduled_lr(lr, 9, 2, cosine, 0.1, 6) == doctest::Approx(lr * 0.1).epsilon(1e-15));  // past the end
  CHECK(scheduled_lr(lr, 5, 2, LrSchedule::linear, 0.0, 6) == doctest::Approx(lr * 0.25).epsilon(1e-15));
  CHECK(scheduled_lr(lr, 5, 2, LrSchedule::constant, 0.1, 6) == lr);
  CHECK(scheduled_lr(lr, 5, 2, LrSchedule::cosine, 0.1, 0) == lr);  // target not chosen yet (--minutes)
  CHECK_THROWS_WITH_AS(parse_lr_schedule("step"), doctest::Contains("use constant, cosine or linear"), Error);
}

// Tests for ddpm/extensions/guidance.h: the guidance formula with a fake eps, unet_eps_fn's guided
// output against two plain forward passes, and the class grid's layout.
#include "ddpm/core/check.h"
#include "ddpm/extensions/guidance.h"
#include "ddpm/train/trainer.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

TEST_CASE("guidance: eps = (1 + w) eps(x, c) - w eps(x, null), with a fake eps") {
  Tensor c = Tensor::from({1, 1, 1, 3}, {1.0f, -2.0f, 0.5f}), u = Tensor::from({1, 1, 1, 3}, {0.0f, 1.0f, 0.5f});
  CHECK(guided_eps(c, u, 0.0).to_vector() == c.to_vector());  // w = 0: the conditional model
  CHECK(guided_eps(c, u, -1.0).to_vector() == u.to_vector());  // w = -1: the unconditional one
  CHECK(guided_eps(c, u, 2.0).to_vector() == std::vector<float>{3.0f, -8.0f, 0.5f});  // exact in float
  CHECK_THROWS_AS(guided_eps(c, Tensor({3}), 1.0), Error);
  CHECK(class_grid_labels(3, 2) == std::vector<int64_t>{0, 0, 1, 1, 2, 2});
}

TEST_CASE("guidance: unet_eps_fn guides a conditional U-Net's eps channels; v comes from the conditional pass") {
  UNetConfig c = unet_config("minimal");
  c.num_classes = 10;
  c.learned_variance = true;
  UNet model(c, 3);
  // Non-zero output layer and class embedding, so the outputs depend on the label.
  for (Parameter* p : model.parameters()) {
    Tensor r = randn(p->var->value.shape(), 99, 0.1f);
    for (int64_t j = 0; j < r.numel(); j++) p->var->value[j] += r[j];
  }
  Tensor x = randn({2, 1, 8, 8}, 4);
  const std::vector<int64_t> t{5, 17}, labels{3, 7}, nulls{10, 10};
  auto raw = [&](const std::vector<int64_t>& ls) {
    Tape tape = Tape::no_grad();
    return model.forward(tape, constant(x), t, ForwardContext{}, &ls)->value;
  };
  Tensor oc = raw(labels), on = raw(nulls);
  ModelOutput g = unet_eps_fn(model, &labels, 2.0)(x, t);
  REQUIRE(g.eps.shape() == Shape{2, 1, 8, 8});
  for (int64_t i = 0; i < 2; i++)
    for (int64_t j = 0; j < 64; j++) {
      const int64_t e = i * 128 + j, r = i * 128 + 64 + j;
      CHECK(g.eps[i * 64 + j] == 3.0f * oc[e] - 2.0f * on[e]);           // same float ops as guided_eps
      CHECK(g.v[i * 64 + j] == 0.5f * (oc[r] + 1.0f));                   // v = (r + 1) / 2, conditional
    }
  // The label matters (the class embedding reaches the output).
  double diff = 0;
  for (int64_t j = 0; j < oc.numel(); j++) diff += std::fabs(oc[j] - on[j]);
  CHECK(diff > 1e-3);
}

// The modules composed on the tape: a ResBlock followed by an AttnBlock, checked
// against finite differences for the input, the time embedding and every parameter.
#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/model/nn.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

TEST_CASE("nn: ResBlock + AttnBlock composite gradients match finite differences") {
  Generator gen(3);
  // in 4 -> out 6 channels (so the 1x1 skip conv is used), 2 groups, temb 8.
  ResBlock block("block", 4, 6, 8, 2, 0.0f, 0, gen);
  AttnBlock attn("attn", 6, 2, gen);
  ParamList ps;
  block.collect(ps);
  attn.collect(ps);
  // Move the zero-initialized layers off zero so every path carries gradient.
  for (Parameter* p : ps)
    for (int64_t i = 0; i < p->var->value.numel(); i++) p->var->value[i] += 0.1f * gen.normal();

  auto f = [&](Tape& tape, const std::vector<Var>& in) {
    return attn(tape, block(tape, in[0], in[1], ForwardContext{}));
  };
  // Inputs (x and temb) through the generic helper. No double twin of the composite: float32
  // central differences with h = 1e-2 (truncation h^2 / 6 times the third derivative, the
  // outputs' rounding ~6e-8 |out| / h), each entry against its own tolerance.
  const testing::GradTol tol{2e-4, 2e-3};
  testing::gradcheck("resblock+attn inputs", f, {randn({2, 4, 3, 3}, 1), randn({2, 8}, 2)}, 1e-2, tol);

  // Parameters: every element of every tensor, each entry against the same tolerance.
  Tensor x = randn({2, 4, 3, 3}, 1), temb = randn({2, 8}, 2);
  Tensor R = randn({2, 6, 3, 3}, 7);
  auto loss = [&](Tape& tape) {
    Var y = f(tape, {constant(x), constant(temb)});
    double s = 0;
    for (int64_t i = 0; i < y->value.numel(); i++) s += double(y->value[i]) * R[i];
    return std::make_pair(y, s);
  };
  zero_grad(ps);
  {
    Tape tape;
    tape.backward(loss(tape).first, R);
  }
  const double h = 1e-2;
  for (Parameter* p : ps) {
    Tensor& w = p->var->value;
    std::vector<double> fd(w.numel());
    for (int64_t i = 0; i < w.numel(); i++) {
      const float w0 = w[i], wp = float(w0 + h), wm = float(w0 - h);
      Tape t = Tape::no_grad();
      w[i] = wp;
      double lp = loss(t).second;
      w[i] = wm;
      double lm = loss(t).second;
      w[i] = w0;
      fd[i] = (lp - lm) / (double(wp) - double(wm));  // the step actually taken
    }
    testing::detail::report(p->name.c_str(), testing::detail::compare_entries(p->name.c_str(), 0, p->var->grad, fd, tol));
  }
}

TEST_CASE("nn: zero-initialized layers start at zero, others at PyTorch's default bound") {
  Generator gen(1);
  ResBlock block("b", 4, 8, 16, 2, 0.0f, 0, gen);
  for (int64_t i = 0; i < block.conv2.weight.var->value.numel(); i++) REQUIRE(block.conv2.weight.var->value[i] == 0.0f);
  const float bound = 1.0f / std::sqrt(4.0f * 9.0f);
  float max_abs = 0;
  for (int64_t i = 0; i < block.conv1.weight.var->value.numel(); i++)
    max_abs = std::max(max_abs, std::fabs(block.conv1.weight.var->value[i]));
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.8f * bound);  // 288 uniform draws reach close to the bound
  CHECK(block.norm1.weight.var->value[0] == 1.0f);
  CHECK(block.has_skip);
  // The switch itself, on a layer of its own: Init::zero gives zeros (weight and bias), the
  // default PyTorch's uniform bound 1/sqrt(fan_in).
  Linear zero("zero", 3, 5, gen, Init::zero), standard("standard", 3, 5, gen);
  for (int64_t i = 0; i < 15; i++) REQUIRE(zero.weight.var->value[i] == 0.0f);
  for (int64_t i = 0; i < 5; i++) REQUIRE(zero.bias.var->value[i] == 0.0f);
  float max_linear = 0;
  for (int64_t i = 0; i < 15; i++) max_linear = std::max(max_linear, std::fabs(standard.weight.var->value[i]));
  CHECK(max_linear > 0.0f);
  CHECK(max_linear <= 1.0f / std::sqrt(3.0f));
}

TEST_CASE("nn: GroupNorm normalizes each (sample, group), then scales by gamma and shifts by beta per channel") {
  GroupNorm gn("gn", 2, 4);  // 2 groups of 2 channels
  for (int64_t c = 0; c < 4; c++) {
    CHECK(gn.weight.var->value[c] == 1.0f);  // PyTorch's init: gamma = 1, beta = 0
    CHECK(gn.bias.var->value[c] == 0.0f);
    gn.weight.var->value[c] = 0.5f + c;
    gn.bias.var->value[c] = c - 1.5f;
  }
  const int64_t N = 2, C = 4, HW = 9;
  Tensor x = randn({N, C, 3, 3}, 91, 2.0f);
  Tape tape;
  const Tensor out = gn(tape, constant(x))->value, fused = gn.with_silu(tape, constant(x))->value;
  Tensor want(x.shape()), want_silu(x.shape());
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < 2; g++) {
      const float* xg = x.data() + (n * C + 2 * g) * HW;  // the group's 2 channels are contiguous
      double mean = 0, var = 0;
      for (int64_t k = 0; k < 2 * HW; k++) mean += xg[k] / (2.0 * HW);
      for (int64_t k = 0; k < 2 * HW; k++) var += (xg[k] - mean) * (xg[k] - mean) / (2.0 * HW);  // biased, as PyTorch
      for (int64_t k = 0; k < 2 * HW; k++) {
        const int64_t c = 2 * g + k / HW, j = (n * C + 2 * g) * HW + k;
        const double y = (0.5 + c) * (xg[k] - mean) / std::sqrt(var + 1e-5) + (c - 1.5);
        want[j] = static_cast<float>(y);
        want_silu[j] = static_cast<float>(y / (1 + std::exp(-y)));
      }
    }
  // float32 statistics over 18 values of O(1): a few ulps of the O(5) outputs.
  testing::check_allclose("GroupNorm", out, want, 1e-5, 1e-5);
  testing::check_allclose("GroupNorm with_silu", fused, want_silu, 1e-5, 1e-5);
}

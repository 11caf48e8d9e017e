#include <set>

#include "ddpm/core/check.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/model/unet.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

TEST_CASE("unet: the named configs have exactly the documented parameter counts") {
  UNet tiny(unet_config("tiny"));
  CHECK(tiny.num_parameters() == 1112801);
  UNet small(unet_config("small"));
  CHECK(small.num_parameters() == 6469889);
  CHECK_THROWS_AS(unet_config("huge"), Error);
}

TEST_CASE("unet: cifar10 is Ho et al.'s CIFAR-10 model, 35,746,307 parameters") {
  const UNetConfig c = unet_config("cifar10");
  CHECK(c.image_size == 32);
  CHECK(c.in_ch == 3);
  CHECK(c.ch == 128);
  CHECK(c.ch_mult == std::vector<int64_t>{1, 2, 2, 2});
  CHECK(c.num_res_blocks == 2);
  CHECK(c.attn_resolutions == std::vector<int64_t>{16});
  CHECK(c.dropout == 0.1f);
  UNet net(c);
  // The count an independent PyTorch port of the architecture gives (issue 18).
  CHECK(net.num_parameters() == 35746307);
}

TEST_CASE("unet: resized_config moves the attention with the image size, level by level") {
  const UNetConfig tiny = unet_config("tiny");  // 28 -> 14 -> 7, attention at 7 (level 2)
  CHECK(resized_config(tiny, 32).attn_resolutions == std::vector<int64_t>{8});
  CHECK(resized_config(tiny, 16).attn_resolutions == std::vector<int64_t>{4});
  CHECK(resized_config(tiny, 32).image_size == 32);
  const UNetConfig cifar = unet_config("cifar10");  // 32 -> 16 -> 8 -> 4, attention at 16 (level 1)
  CHECK(resized_config(cifar, 64).attn_resolutions == std::vector<int64_t>{32});
  CHECK(resized_config(cifar, 16).attn_resolutions == std::vector<int64_t>{8});
  CHECK(resized_config(cifar, 32).attn_resolutions == cifar.attn_resolutions);
  // cifar10 halves the image 3 times: 20 is not a multiple of 8
  CHECK_THROWS_WITH_AS(resized_config(cifar, 20), doctest::Contains("not a multiple of 8"), Error);
  // an RGB tiny at 16x16 runs: [N, 3, 16, 16] in, the same out
  UNetConfig rgb = resized_config(tiny, 16);
  rgb.in_ch = 3;
  UNet net(rgb, 1);
  Tape tape = Tape::no_grad();
  Var y = net.forward(tape, constant(randn({2, 3, 16, 16}, 3)), {1, 500}, ForwardContext{});
  CHECK(y->value.shape() == Shape{2, 3, 16, 16});
}

TEST_CASE("unet: parameter names mirror the module tree and are unique") {
  UNet net(unet_config("tiny"));
  std::set<std::string> names;
  for (Parameter* p : net.parameters()) CHECK(names.insert(p->name).second);
  for (const char* n : {"temb.dense0.weight", "conv_in.weight", "down.0.blocks.0.norm1.weight",
                        "down.0.downsample.conv.weight", "down.2.attns.0.q.weight", "mid.attn1.proj_out.bias",
                        "up.1.blocks.1.skip.weight", "up.1.upsample.conv.weight", "norm_out.weight",
                        "conv_out.weight"})
    CHECK_MESSAGE(names.count(n) == 1, n);
}

TEST_CASE("unet: forward gives [N, out_ch, S, S] for tiny and small") {
  for (const char* name : {"tiny", "small"}) {
    UNet net(unet_config(name), 1);
    Tape tape = Tape::no_grad();
    Var x = constant(randn({2, 1, 28, 28}, 3));
    Var y = net.forward(tape, x, {1, 1000}, ForwardContext{});
    CHECK(y->value.shape() == Shape{2, 1, 28, 28});
    CHECK_THROWS_AS(net.forward(tape, x, {1}, ForwardContext{}), Error);  // 1 timestep for 2 images
  }
}

TEST_CASE("unet: config survives the metadata round trip") {
  UNetConfig c = unet_config("small");
  c.num_classes = 10;
  UNetConfig d = UNetConfig::from_metadata(c.to_metadata(), "c.safetensors");
  CHECK(d.to_metadata() == c.to_metadata());
  auto m = c.to_metadata();
  m["config.ch"] = "abc";
  CHECK_THROWS_WITH_AS(UNetConfig::from_metadata(m, "m.safetensors"), doctest::Contains("m.safetensors"), Error);
}

// A minimal U-Net whose zero-initialized layers are perturbed, so every path carries
// gradient; the loss is random-projection of the output.
TEST_CASE("unet: a minimal U-Net's parameter gradients match finite differences") {
  UNetConfig c = unet_config("minimal");
  c.num_classes = 3;
  UNet net(c, 5);
  ParamList ps = net.parameters();
  Generator gen(11);
  for (Parameter* p : ps)
    for (int64_t i = 0; i < p->var->value.numel(); i++) p->var->value[i] += 0.05f * gen.normal();
  Tensor x = randn({2, 1, 8, 8}, 4);
  std::vector<int64_t> t = {3, 40};
  std::vector<int64_t> labels = {1, 3};
  Tensor R = randn({2, 1, 8, 8}, 6);
  auto loss = [&](Tape& tape) {
    Var y = net.forward(tape, constant(x), t, ForwardContext{}, &labels);
    return sum(tape, mul(tape, y, constant(R)));
  };
  zero_grad(ps);
  {
    Tape tape;
    tape.backward(loss(tape));
  }
  // Check a spread of coordinates in every parameter tensor (all of them would be slow).
  const double h = 1e-2;
  // Gradients that are exactly zero in exact arithmetic (the k bias: softmax ignores a
  // per-row constant) leave only rounding noise in the difference quotient, so each
  // tensor's errors are measured against its own largest gradient, floored at 1% of the
  // largest gradient anywhere in the model.
  double global_scale = 1e-3;
  for (Parameter* p : ps)
    for (int64_t i = 0; i < p->var->grad.numel(); i++) global_scale = std::max(global_scale, std::fabs(double(p->var->grad[i])));
  double worst = 0.0;
  for (Parameter* p : ps) {
    Tensor& w = p->var->value;
    double scale = 1e-2 * global_scale;
    for (int64_t i = 0; i < w.numel(); i++) scale = std::max(scale, std::fabs(double(p->var->grad[i])));
    for (int64_t i = 0; i < w.numel(); i += std::max<int64_t>(1, w.numel() / 3)) {
      const float w0 = w[i];
      Tape t1 = Tape::no_grad();
      w[i] = static_cast<float>(w0 + h);
      double lp = loss(t1)->value[0];
      w[i] = static_cast<float>(w0 - h);
      double lm = loss(t1)->value[0];
      w[i] = w0;
      double err = std::fabs((lp - lm) / (2 * h) - p->var->grad[i]) / scale;
      if (err > 2e-2) MESSAGE(p->name << "[" << i << "]: fd " << (lp - lm) / (2 * h) << " vs " << p->var->grad[i]);
      worst = std::max(worst, err);
    }
  }
  // float32 forward through ~40 ops: rounding in the difference quotient is ~1e-3 of
  // the largest gradient at h = 1e-2; 2e-2 still catches any wrong term.
  CHECK(worst < 2e-2);
}

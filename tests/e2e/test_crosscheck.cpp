// Cross-check against PyTorch: every layer, the minimal U-Net with every parameter's
// gradient, an RGB U-Net (16x16x3), Adam, ten training steps, twenty steps of Algorithm 2
// and the schedule tables agree with the PyTorch mirror in tools/torch_reference.py.
//
// The fixtures (tests/fixtures/*.safetensors) were written by
//   /usr/bin/python3 tools/torch_reference.py fixtures --out tests/fixtures
// and hold the inputs as well as the outputs: these tests never run Python. They read the
// folder named by DDPM_FIXTURE_DIR when it is set (`make crosscheck` regenerates the
// fixtures into a temp folder and points it there), else tests/fixtures.
//
// DDPM_EPS_CHECKS (colon-separated files from `torch_reference.py eps-check` or `export
// --eps-check`) adds eps checks of other checkpoints, e.g. one written by ./train_mnist.
//
// Tolerances. Both sides compute in float32 but sum in different orders (our GEMM
// blocking vs. MKL/oneDNN), so single results differ by a few float32 roundings of the
// terms summed: relative error ~1e-6. An element that comes out of cancellation (a
// gradient summed over the batch, a GroupNorm output near its mean) carries the rounding
// of the terms it was summed from, not of its own size, so each comparison also allows
// an absolute error relative to the tensor's largest value (scaled(), below).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "ddpm/app/sampling.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/model/nn.h"
#include "ddpm/ops/conv.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/ops/linear.h"
#include "ddpm/ops/group_norm.h"
#include "ddpm/ops/shape.h"
#include "ddpm/train/optim.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

namespace {

std::string fixture_dir() {
  const char* d = std::getenv("DDPM_FIXTURE_DIR");
  return d && *d ? d : "tests/fixtures";
}

std::string fixture_path(const std::string& file) { return fixture_dir() + "/" + file; }

SafeTensors fixture(const std::string& file) { return load_safetensors(fixture_path(file)); }

std::vector<int64_t> to_ints(const Tensor& t) {
  std::vector<int64_t> v(t.numel());
  for (int64_t i = 0; i < t.numel(); i++) v[i] = static_cast<int64_t>(std::llround(t[i]));
  return v;
}

double meta_number(const SafeTensors& st, const std::string& key) {
  auto it = st.metadata.find(key);
  REQUIRE_MESSAGE(it != st.metadata.end(), st.source << " has no metadata '" << key << "'");
  return std::stod(it->second);
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (int64_t i = 0; i < t.numel(); i++) m = std::max(m, std::fabs(static_cast<double>(t[i])));
  return m;
}

// |got - want| <= rtol * (|want| + max|want|): rtol relative to each element, and the same
// rtol relative to the tensor's scale for elements that come out of cancellation.
void scaled(const std::string& name, const Tensor& got, const Tensor& want, double rtol) {
  check_allclose(name.c_str(), got, want, rtol * max_abs(want), rtol);
}

// Copies a module's parameters from "<prefix>.param.<local name>", where the module was
// built under the name "m" ("m.norm.weight" -> local name "norm.weight").
void load_params(const SafeTensors& st, const std::string& prefix, const ParamList& ps) {
  for (Parameter* p : ps) {
    REQUIRE(p->name.compare(0, 2, "m.") == 0);
    p->var->value.copy_(st.at(prefix + ".param." + p->name.substr(2)));
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Compares every parameter's gradient, "<prefix><name>" in the fixture, to rtol of the
// tensor's scale. The attention k bias's gradient is zero in exact arithmetic (softmax
// ignores a per-row constant), so both sides hold rounding noise there: it is compared
// to rtol of the scale of the same block's q bias gradient instead.
void check_param_grads(const SafeTensors& st, const std::string& prefix, const ParamList& ps, double rtol,
                       size_t strip = 0) {
  for (Parameter* p : ps) {
    const std::string name = prefix + p->name.substr(strip);
    if (ends_with(name, ".k.bias")) {
      const std::string q_bias = name.substr(0, name.size() - 7) + ".q.bias";
      check_allclose(name.c_str(), p->var->grad, st.at(name), rtol * max_abs(st.at(q_bias)), 0.0);
    } else {
      scaled(name, p->var->grad, st.at(name), rtol);
    }
  }
}

// The eps check written by torch_reference.py: load the checkpoint it names (relative to
// the check's folder unless absolute) with load_model, run it on x_t and t, compare.
void check_eps_file(const std::string& path, double atol, bool report) {
  SafeTensors check = load_safetensors(path);
  std::string ckpt = check.metadata.at("checkpoint");
  if (!ckpt.empty() && ckpt[0] != '/') {
    const size_t slash = path.rfind('/');
    ckpt = (slash == std::string::npos ? std::string(".") : path.substr(0, slash)) + "/" + ckpt;
  }
  const bool use_ema = check.metadata.at("use_ema") == "1";
  std::map<std::string, std::string> meta;
  std::unique_ptr<UNet> model = load_model(ckpt, use_ema, &meta);
  const UNetConfig& c = model->config();
  const Tensor& x_t = check.at("x_t");
  const std::vector<int64_t> t = to_ints(check.at("t"));
  std::vector<int64_t> null_labels(t.size(), c.num_classes);
  Tape tape = Tape::no_grad();
  Var eps_theta = model->forward(tape, constant(x_t), t, ForwardContext{}, c.num_classes > 0 ? &null_labels : nullptr);
  const Tensor& want = check.at("eps_theta");
  double worst = 0.0;
  for (int64_t i = 0; i < want.numel(); i++) worst = std::max(worst, std::fabs(double(eps_theta->value[i]) - want[i]));
  if (report)
    std::printf("crosscheck: %s (%s%s, model '%s'): %zu images, max |eps_ours - eps_torch| = %.3g\n", path.c_str(),
                ckpt.c_str(), use_ema ? ", EMA weights" : "", c.name.c_str(), t.size(), worst);
  check_allclose(("eps_theta of " + ckpt).c_str(), eps_theta->value, want, atol, 0.0);
}

}  // namespace

// Single layers: rtol 1e-5 (a few float32 roundings of ~1e-7 each, summed over at most a
// few dozen terms, with headroom), applied per element and to the tensor's scale.
constexpr double kLayerRtol = 1e-5;

TEST_CASE("crosscheck: conv2d k3/s1, k3/s2 and k1 match PyTorch forward and backward") {
  SafeTensors st = fixture("layers.safetensors");
  for (const std::string name : {"conv_k3s1", "conv_k3s2", "conv_k1"}) {
    Var x = variable(st.at(name + ".x").clone());
    Var w = variable(st.at(name + ".weight").clone());
    Var b = variable(st.at(name + ".bias").clone());
    Tape tape;
    Var out = conv2d(tape, x, w, b, static_cast<int64_t>(meta_number(st, name + ".stride")),
                     static_cast<int64_t>(meta_number(st, name + ".pad")));
    tape.backward(out, st.at(name + ".dout"));
    scaled(name + ".out", out->value, st.at(name + ".out"), kLayerRtol);
    scaled(name + ".dx", x->grad, st.at(name + ".dx"), kLayerRtol);
    scaled(name + ".dweight", w->grad, st.at(name + ".dweight"), kLayerRtol);
    scaled(name + ".dbias", b->grad, st.at(name + ".dbias"), kLayerRtol);
  }
}

TEST_CASE("crosscheck: linear matches PyTorch forward and backward") {
  SafeTensors st = fixture("layers.safetensors");
  Var x = variable(st.at("linear.x").clone());
  Var w = variable(st.at("linear.weight").clone());
  Var b = variable(st.at("linear.bias").clone());
  Tape tape;
  Var out = linear(tape, x, w, b);
  tape.backward(out, st.at("linear.dout"));
  scaled("linear.out", out->value, st.at("linear.out"), kLayerRtol);
  scaled("linear.dx", x->grad, st.at("linear.dx"), kLayerRtol);
  scaled("linear.dweight", w->grad, st.at("linear.dweight"), kLayerRtol);
  scaled("linear.dbias", b->grad, st.at("linear.dbias"), kLayerRtol);
}

TEST_CASE("crosscheck: GroupNorm matches PyTorch forward and backward") {
  SafeTensors st = fixture("layers.safetensors");
  Var x = variable(st.at("group_norm.x").clone());
  Var gamma = variable(st.at("group_norm.weight").clone());
  Var beta = variable(st.at("group_norm.bias").clone());
  Tape tape;
  Var out = group_norm(tape, x, gamma, beta, static_cast<int64_t>(meta_number(st, "group_norm.groups")));
  tape.backward(out, st.at("group_norm.dout"));
  scaled("group_norm.out", out->value, st.at("group_norm.out"), kLayerRtol);
  scaled("group_norm.dx", x->grad, st.at("group_norm.dx"), kLayerRtol);
  scaled("group_norm.dweight", gamma->grad, st.at("group_norm.dweight"), kLayerRtol);
  scaled("group_norm.dbias", beta->grad, st.at("group_norm.dbias"), kLayerRtol);
}

TEST_CASE("crosscheck: SiLU, nearest upsampling and channel concat match PyTorch") {
  SafeTensors st = fixture("layers.safetensors");
  {
    Var x = variable(st.at("silu.x").clone());
    Tape tape;
    Var out = silu(tape, x);
    tape.backward(out, st.at("silu.dout"));
    scaled("silu.out", out->value, st.at("silu.out"), kLayerRtol);
    scaled("silu.dx", x->grad, st.at("silu.dx"), kLayerRtol);
  }
  {
    // Copies and sums of four: exact up to the order of a 4-term sum.
    Var x = variable(st.at("upsample.x").clone());
    Tape tape;
    Var out = upsample_nearest2x(tape, x);
    tape.backward(out, st.at("upsample.dout"));
    check_allclose("upsample.out", out->value, st.at("upsample.out"), 0.0, 0.0);
    scaled("upsample.dx", x->grad, st.at("upsample.dx"), 1e-6);
  }
  {
    // Pure copies: exact.
    Var a = variable(st.at("concat.a").clone());
    Var b = variable(st.at("concat.b").clone());
    Tape tape;
    Var out = concat_channels(tape, a, b);
    tape.backward(out, st.at("concat.dout"));
    check_allclose("concat.out", out->value, st.at("concat.out"), 0.0, 0.0);
    check_allclose("concat.da", a->grad, st.at("concat.da"), 0.0, 0.0);
    check_allclose("concat.db", b->grad, st.at("concat.db"), 0.0, 0.0);
  }
}

TEST_CASE("crosscheck: the attention block matches PyTorch, input and every parameter's gradient") {
  SafeTensors st = fixture("layers.safetensors");
  Generator gen(1);
  AttnBlock block("m", static_cast<int64_t>(meta_number(st, "attn_block.channels")),
                  static_cast<int64_t>(meta_number(st, "attn_block.groups")), gen);
  ParamList ps;
  block.collect(ps);
  load_params(st, "attn_block", ps);
  zero_grad(ps);
  Var x = variable(st.at("attn_block.x").clone());
  Tape tape;
  Var out = block(tape, x);
  tape.backward(out, st.at("attn_block.dout"));
  // GroupNorm, three 1x1 convs, softmax and two batched products in a row: 2e-5.
  scaled("attn_block.out", out->value, st.at("attn_block.out"), 2e-5);
  scaled("attn_block.dx", x->grad, st.at("attn_block.dx"), 2e-5);
  check_param_grads(st, "attn_block.grad.", ps, 2e-5, 2);
}

TEST_CASE("crosscheck: the ResBlock matches PyTorch, inputs and every parameter's gradient") {
  SafeTensors st = fixture("layers.safetensors");
  Generator gen(1);
  auto n = [&](const char* k) { return static_cast<int64_t>(meta_number(st, std::string("res_block.") + k)); };
  ResBlock block("m", n("in"), n("out"), n("temb_ch"), n("groups"), 0.0f, 0, gen);
  ParamList ps;
  block.collect(ps);
  load_params(st, "res_block", ps);
  zero_grad(ps);
  Var x = variable(st.at("res_block.x").clone());
  Var temb = variable(st.at("res_block.temb").clone());
  Tape tape;
  Var out = block(tape, x, temb, ForwardContext{});
  tape.backward(out, st.at("res_block.dout"));
  // Two GroupNorm + SiLU + conv stages in a row: 2e-5.
  scaled("res_block.out", out->value, st.at("res_block.out"), 2e-5);
  scaled("res_block.dx", x->grad, st.at("res_block.dx"), 2e-5);
  scaled("res_block.dtemb", temb->grad, st.at("res_block.dtemb"), 2e-5);
  check_param_grads(st, "res_block.grad.", ps, 2e-5, 2);
}

TEST_CASE("crosscheck: the minimal U-Net's eps, L_simple and every parameter's gradient match PyTorch") {
  SafeTensors st = fixture("unet_minimal.safetensors");
  std::map<std::string, std::string> meta;
  std::unique_ptr<UNet> model = load_model(fixture_path(st.metadata.at("weights")), false, &meta);
  ParamList ps = model->parameters();
  zero_grad(ps);
  Tape tape;
  Var eps_theta = model->forward(tape, constant(st.at("x_t")), to_ints(st.at("t")), ForwardContext{});
  Var loss = loss_simple(tape, eps_theta, st.at("eps"));
  tape.backward(loss);
  // About 25 layers deep: the per-layer rounding (~2e-7 measured) grows to ~1e-6 at the
  // output (8e-7 measured): 2e-5.
  scaled("eps_theta", eps_theta->value, st.at("eps_theta"), 2e-5);
  check_allclose("L_simple", loss->value, st.at("loss"), 0.0, 1e-5);
  // Gradients go through the whole network twice (forward and backward): up to 3e-6 of a
  // tensor's scale measured, 5e-5 allowed (the k biases: of their q bias's scale, see
  // check_param_grads).
  check_param_grads(st, "grad.", ps, 5e-5);
  int64_t compared = 0;
  for (const auto& kv : st.tensors) compared += kv.first.compare(0, 5, "grad.") == 0;
  CHECK(compared == static_cast<int64_t>(ps.size()));  // the fixture has every parameter's gradient
}

// tools/torch_reference.py's formula_weights_: element i of parameter `name` is
// sin(0.61 i + 0.17 h) / sqrt(fan_in) for a matrix or kernel, 0.1 sin(...) for a bias and
// 1 + 0.1 sin(...) for a GroupNorm weight (h: the sum of the name's bytes), in double,
// rounded to float once.
void formula_weights(const ParamList& ps) {
  for (Parameter* p : ps) {
    Tensor& w = p->var->value;
    double h = 0;
    for (unsigned char b : p->name) h += b;
    const int64_t fan_in = w.dim() >= 2 ? w.numel() / w.size(0) : 0;
    const bool norm_weight = p->name.find("norm") != std::string::npos && ends_with(p->name, ".weight");
    for (int64_t i = 0; i < w.numel(); i++) {
      const double v = std::sin(0.61 * static_cast<double>(i) + 0.17 * h);
      w[i] = static_cast<float>(fan_in ? v / std::sqrt(static_cast<double>(fan_in)) : norm_weight ? 1.0 + 0.1 * v : 0.1 * v);
    }
  }
}

TEST_CASE("crosscheck: an RGB U-Net (16x16x3, ch 16) matches PyTorch: eps, L_simple, the channel layers' gradients") {
  SafeTensors st = fixture("unet_rgb.safetensors");
  const UNetConfig c = UNetConfig::from_metadata(st.metadata, st.source);
  CHECK(c.in_ch == 3);
  CHECK(c.image_size == 16);
  UNet model(c);
  ParamList ps = model.parameters();
  formula_weights(ps);
  zero_grad(ps);
  Tape tape;
  Var eps_theta = model.forward(tape, constant(st.at("x_t")), to_ints(st.at("t")), ForwardContext{});
  Var loss = loss_simple(tape, eps_theta, st.at("eps"));
  tape.backward(loss);
  // As deep as the minimal U-Net, the same bars (its test above says why).
  scaled("eps_theta", eps_theta->value, st.at("eps_theta"), 2e-5);
  check_allclose("L_simple", loss->value, st.at("loss"), 0.0, 1e-5);
  int64_t compared = 0;
  for (Parameter* p : ps)
    if (st.find("grad." + p->name)) {
      scaled("grad." + p->name, p->var->grad, st.at("grad." + p->name), 5e-5);
      compared++;
    }
  CHECK(compared == 6);  // conv_in, conv_out and the first attention's q (at 8x8): weights and biases
}

TEST_CASE("crosscheck: a PyTorch-initialized state dict loads with load_model and gives PyTorch's eps") {
  // unet_minimal_weights.safetensors is a torch state_dict() saved with our names and the
  // config.* metadata, nothing else: the format another implementation would write.
  SafeTensors weights = fixture("unet_minimal_weights.safetensors");
  CHECK(weights.find("ema.conv_in.weight") == nullptr);
  // Max abs 1e-4, the bar the interop checks set; the minimal U-Net is well inside it.
  check_eps_file(fixture_path("eps_check_minimal.safetensors"), 1e-4, false);

  // Extra checks from `make crosscheck` (a ./train_mnist checkpoint, a torch-initialized tiny U-Net).
  const char* extra = std::getenv("DDPM_EPS_CHECKS");
  if (extra && *extra) {
    std::stringstream ss(extra);
    std::string path;
    while (std::getline(ss, path, ':'))
      if (!path.empty()) check_eps_file(path, 1e-4, true);
  }
}

TEST_CASE("crosscheck: three Adam steps match torch.optim.Adam") {
  SafeTensors st = fixture("adam.safetensors");
  Parameter p0 = make_parameter("p0", st.at("p0.init").clone());
  Parameter p1 = make_parameter("p1", st.at("p1.init").clone());
  ParamList ps = {&p0, &p1};
  const double lr = meta_number(st, "lr");
  Adam adam(ps, AdamConfig{lr, meta_number(st, "beta1"), meta_number(st, "beta2"), meta_number(st, "eps")});
  for (int k = 0; k < 3; k++) {
    const std::string s = "step." + std::to_string(k) + ".";
    p0.var->grad_ref().copy_(st.at(s + "g0"));
    p1.var->grad_ref().copy_(st.at(s + "g1"));
    adam.step(lr);
    // Elementwise in float32 with the same formula; (1 - beta1) and the bias corrections
    // are rounded differently (ours from double), a few 1e-8 relative on the step: 1e-6.
    check_allclose((s + "p0").c_str(), p0.var->value, st.at(s + "p0"), 1e-7, 1e-6);
    check_allclose((s + "p1").c_str(), p1.var->value, st.at(s + "p1"), 1e-7, 1e-6);
  }
  check_allclose("exp_avg p0", adam.m()[0], st.at("m0"), 1e-9, 1e-6);
  check_allclose("exp_avg p1", adam.m()[1], st.at("m1"), 1e-12, 1e-6);
  check_allclose("exp_avg_sq p0", adam.v()[0], st.at("v0"), 1e-12, 1e-6);
  check_allclose("exp_avg_sq p1", adam.v()[1], st.at("v1"), 1e-18, 1e-6);
}

TEST_CASE("crosscheck: ten training steps of the minimal U-Net match PyTorch (loss trace, final weights)") {
  SafeTensors st = fixture("train_minimal.safetensors");
  std::unique_ptr<UNet> model = load_model(fixture_path(st.metadata.at("weights")), false, nullptr);
  ParamList ps = model->parameters();
  const Schedule s = make_schedule(st.metadata.at("schedule"), static_cast<int64_t>(meta_number(st, "T")));
  const double lr = meta_number(st, "lr"), grad_clip = meta_number(st, "grad_clip");
  const int64_t warmup = static_cast<int64_t>(meta_number(st, "warmup"));
  Adam adam(ps, AdamConfig{lr});
  const Tensor& want_loss = st.at("loss");
  Tensor loss(want_loss.shape()), grad_norm(want_loss.shape());
  const ForwardContext ctx{true, RngKey{0, 0}};  // training mode; dropout is 0 in this config
  TapeEpsFn eps_fn = [&](Tape& tape, const Var& x_t, const std::vector<int64_t>& t) {
    return model->forward(tape, x_t, t, ctx);
  };
  // Trainer::step with x0, t and eps from the fixture instead of the data loader and the RNG.
  for (int64_t k = 0; k < want_loss.numel(); k++) {
    const std::string p = "step." + std::to_string(k) + ".";
    zero_grad(ps);
    Tape tape;
    TrainStep ts = training_loss(tape, s, eps_fn, st.at(p + "x0"), to_ints(st.at(p + "t")), st.at(p + "eps"));
    tape.backward(ts.loss);
    loss[k] = ts.loss->value[0];
    grad_norm[k] = static_cast<float>(clip_grad_norm(ps, grad_clip));
    adam.step(warmup_lr(lr, k + 1, warmup));
  }
  // Looser than one pass: step k's loss depends on k earlier updates, and Adam divides by
  // sqrt(v), so a relative difference in a gradient becomes the same relative difference
  // in the update, and gradients near zero turn rounding noise into whole steps. Measured
  // ~1e-7 relative on the loss and the clipped-away gradient norm; 1e-5 allowed.
  check_allclose("loss trace", loss, want_loss, 0.0, 1e-5);
  check_allclose("grad norm trace", grad_norm, st.at("grad_norm"), 0.0, 1e-5);
  // Final weights: each moves by up to lr per step, and the two sides' updates differ by
  // the gradients' relative difference (~1e-5 at worst): 1.4e-6 absolute measured, 2e-5
  // allowed. The k bias has no effect on the output (its gradient is zero in exact
  // arithmetic), so Adam turns rounding noise into steps of up to lr each: 10 * lr.
  for (Parameter* p : ps) {
    check_allclose(("final." + p->name).c_str(), p->var->value, st.at("final." + p->name),
                   ends_with(p->name, ".k.bias") ? 10 * lr : 2e-5, 0.0);
  }
}

TEST_CASE("crosscheck: twenty steps of Algorithm 2 match PyTorch for sigma^2 = beta and beta-tilde") {
  SafeTensors st = fixture("sample_minimal.safetensors");
  std::unique_ptr<UNet> model = load_model(fixture_path(st.metadata.at("weights")), false, nullptr);
  ScheduleOptions so;
  so.beta_start = meta_number(st, "beta_start");
  so.beta_end = meta_number(st, "beta_end");
  const Schedule s = make_schedule(st.metadata.at("schedule"), static_cast<int64_t>(meta_number(st, "T")), so);
  for (VarianceType variance : {VarianceType::fixed_large, VarianceType::fixed_small}) {
    const ModelFn model_fn = fixed_variance_model(s, unet_network(*model), variance);
    Tensor x = st.at("x_T").clone();
    const int64_t N = x.size(0);
    for (int64_t t = s.T; t >= 1; t--) {
      const std::vector<int64_t> tv(N, t);
      // Algorithm 2 line 3, z from the fixture (sample() draws it from our RNG)
      Tensor z = t > 1 ? st.at("z." + std::to_string(t)) : Tensor(x.shape());
      // Algorithm 2 line 4
      x = p_sample(s, x, tv, model_fn(x, tv), z);
      // Each step adds the eps error of one U-Net pass (~1e-6 of |eps|, times B <= 0.3) to
      // an x_t error amplified by A = 1/sqrt(alpha_t) <= 1.12, so the error stays ~1e-6
      // of the chain's scale over 20 steps (4e-7 measured): 1e-5 allowed.
      const std::string name = std::string(variance_name(variance)) + ".x." + std::to_string(t - 1);
      scaled(name, x, st.at(name), 1e-5);
    }
  }
}

TEST_CASE("crosscheck: schedule tables and the fixed variances match their float64 formulas evaluated in numpy") {
  SafeTensors st = fixture("schedules.safetensors");
  for (const std::string& name : schedule_names()) {
    for (int64_t T : {1000, 10}) {
      const Schedule s = make_schedule(name, T);
      // The reverse process's "fixed large" sigma_t^2 and its log, t = 1 included (there the
      // original code takes beta-tilde_2).
      std::vector<double> large(T + 1, 0.0), log_large(T + 1, 0.0);
      for (int64_t t = 1; t <= T; t++) {
        large[t] = reverse_variance(s, t, VarianceType::fixed_large);
        log_large[t] = reverse_log_variance(s, t, VarianceType::fixed_large);
      }
      const std::vector<std::pair<const char*, const std::vector<double>*>> tables = {
          {"fixed_large_variance", &large},
          {"fixed_large_log_variance", &log_large},
          {"beta", &s.beta},
          {"alpha_bar", &s.alpha_bar},
          {"posterior_variance", &s.posterior_variance},
          {"posterior_log_variance_clipped", &s.posterior_log_variance_clipped},
          {"posterior_mean_coef1", &s.posterior_mean_coef1},
          {"posterior_mean_coef2", &s.posterior_mean_coef2}};
      for (const auto& table : tables) {
        const std::string key = name + "." + std::to_string(T) + "." + table.first;
        const Tensor& want = st.at(key);
        REQUIRE(want.numel() == T);
        // Both sides evaluate in double and agree to ~1e-13 (cumulative products over
        // 1000 steps); the fixture holds them rounded to float32, so ours rounded to
        // float32 must be within one float32 ulp (2^-23 relative).
        Tensor got({T});
        for (int64_t t = 1; t <= T; t++) got[t - 1] = static_cast<float>((*table.second)[t]);
        check_allclose(key.c_str(), got, want, 0.0, 1.2e-7);
      }
    }
  }
}

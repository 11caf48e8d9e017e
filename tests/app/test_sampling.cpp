// Tests of ./sample's library side (ddpm/app/sampling.h, ddpm/app/figures.h): batched sampling from a checkpoint,
// the denoising-chain and forward-process figures. A minimal U-Net (8x8 images) with
// perturbed weights stands in for a trained model; T is 10, so the file runs fast.
#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/app/checkpoint_model.h"
#include "ddpm/app/figures.h"
#include "ddpm/app/sampling.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/model/unet_inference.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/train/trainer.h"
#include "tests/dist/thread_ranks.h"
#include "tests/app/app_testing.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::bit_equal;
using testing::randn;
using testing::save_minimal_checkpoint;
using testing::TempDir;

namespace {

// Image `i` of x [N, ...] equals image `j` of y [M, ...], bit for bit.
bool image_equal(const Tensor& x, int64_t i, const Tensor& y, int64_t j) {
  const int64_t D = x.numel() / x.size(0);
  REQUIRE(D == y.numel() / y.size(0));
  for (int64_t k = 0; k < D; k++)
    if (!(x[i * D + k] == y[j * D + k])) return false;
  return true;
}

// Runs of 1, 3 and all n images per batch give the same images [n, 1, 8, 8] and the same K
// chain entries, bit for bit. Returns the run of all n at once.
SampleResult same_for_batches_1_3_and_all(const std::function<SampleResult(int64_t batch)>& run, int64_t n, size_t K) {
  SampleResult all = run(n), one = run(1), three = run(3);
  REQUIRE(all.x0.shape() == Shape{n, 1, 8, 8});
  CHECK(bit_equal(one.x0, all.x0));
  CHECK(bit_equal(three.x0, all.x0));
  REQUIRE((all.chain.size() == K && one.chain.size() == K && three.chain.size() == K));
  for (size_t k = 0; k < K; k++) {
    CHECK(bit_equal(one.chain[k], all.chain[k]));
    CHECK(bit_equal(three.chain[k], all.chain[k]));
  }
  return all;
}

}  // namespace

TEST_CASE("sample: evenly_spaced_t spans both ends, rounds, and caps the count") {
  CHECK(evenly_spaced_t(1000, 0, 11) == std::vector<int64_t>{1000, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
  CHECK(evenly_spaced_t(0, 10, 4) == std::vector<int64_t>{0, 3, 7, 10});  // 0, 3.33, 6.67, 10
  CHECK(evenly_spaced_t(10, 0, 4) == std::vector<int64_t>{10, 7, 3, 0});
  CHECK(evenly_spaced_t(3, 0, 50) == std::vector<int64_t>{3, 2, 1, 0});  // at most |to - from| + 1
  CHECK(evenly_spaced_t(7, 0, 1) == std::vector<int64_t>{7});
  CHECK_THROWS_AS(evenly_spaced_t(7, 0, 0), Error);
}

TEST_CASE("sample: images from a checkpoint are bit-identical for batch sizes 1, 3 and all") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  save_minimal_checkpoint(path, 0, 10);
  LoadedModel l = load_checkpoint_model(path, true);
  CHECK(l.ema);
  const Shape image{1, 8, 8};
  const int64_t n = 5;
  BatchModelFn eps = [&](int64_t, int64_t) { return unet_model(*l.model, l.schedule); };
  auto run = [&](int64_t batch) {
    BatchedSampleOptions o;
    o.batch = batch;
    o.sample.keep_t = {10, 5, 0};
    return sample_in_batches(ddpm_sampler(l.schedule, 4), eps, n, image, o);
  };
  const SampleResult all = same_for_batches_1_3_and_all(run, n, 3);
  // The same images as one direct call of Algorithm 2.
  CHECK(bit_equal(sample(l.schedule, unet_model(*l.model, l.schedule), {n, 1, 8, 8}, 4).x0, all.x0));
  // The model matters (the perturbed net is not the zero predictor): the EMA and the raw
  // weights give different images, and so does another seed.
  LoadedModel raw = load_checkpoint_model(path, false);
  CHECK_FALSE(raw.ema);
  BatchModelFn raw_eps = [&](int64_t, int64_t) { return unet_model(*raw.model, raw.schedule); };
  BatchedSampleOptions o;
  CHECK_FALSE(bit_equal(sample_in_batches(ddpm_sampler(l.schedule, 4), raw_eps, n, image, o).x0, all.x0));
  CHECK_FALSE(bit_equal(sample_in_batches(ddpm_sampler(l.schedule, 5), eps, n, image, o).x0, all.x0));
  for (int64_t i = 0; i < all.x0.numel(); i++) REQUIRE(std::isfinite(all.x0[i]));
}

TEST_CASE("sample: the DDIM sampler of ./sample equals ddim_sample, is batch independent, and converts the target") {
  TempDir dir;
  const std::string path = dir / "v.safetensors";
  save_minimal_checkpoint(path, 0, 10, "v");
  LoadedModel l = load_checkpoint_model(path, true);
  const PredictionTarget predict = prediction_target(l.metadata);  // what ./sample reads
  REQUIRE(predict == PredictionTarget::v);
  const Shape image{1, 8, 8};
  const int64_t n = 5;
  DdimOptions ddim;
  ddim.steps = 4;
  ddim.spacing = Spacing::trailing;
  ddim.eta = 0.5;  // stochastic, so the noise keying by global index is exercised
  const std::vector<int64_t> tau = respace_timesteps(10, 4, Spacing::trailing);
  REQUIRE(tau.size() == 4);
  REQUIRE(tau.back() == 10);
  // What ./sample and ./eval build from their flags: --sampler ddim --ddim-steps 4 --eta 0.5.
  SamplerChoice choice;
  choice.sampler = "ddim";
  choice.ddim_steps = 4;
  choice.eta = 0.5;
  const Sampler sampler = make_sampler(l.schedule, 6, choice);
  CHECK(describe_sampler(choice, 10, SigmaChoice{}) == "DDIM, 4 steps (trailing, eta 0.5)");
  const BatchModelFn eps = unet_batch_model(*l.model, l.schedule, predict, SigmaChoice{});
  auto run = [&](int64_t batch) {
    BatchedSampleOptions o;
    o.batch = batch;
    o.sample.keep_t = {10, tau[1], 0};
    return sample_in_batches(sampler, eps, n, image, o);
  };
  const SampleResult all = same_for_batches_1_3_and_all(run, n, 3);
  // One direct call of the library's DDIM on the converted model gives the same images.
  DdimOptions direct = ddim;
  direct.keep_t = {10, tau[1], 0};
  SampleResult d = ddim_sample(l.schedule, as_eps_fn(l.schedule, unet_network(*l.model), predict), {n, 1, 8, 8}, 6, direct);
  CHECK(bit_equal(d.x0, all.x0));
  // x_T is Algorithm 2's (same seed, same x_T), and the sampler is not Algorithm 2.
  SampleOptions keep_x_T;
  keep_x_T.keep_t = {10};
  SampleResult a2 = sample(l.schedule, unet_model(*l.model, l.schedule, predict, SigmaChoice{}), {n, 1, 8, 8}, 6, keep_x_T);
  CHECK(bit_equal(a2.chain[0], all.chain[0]));
  CHECK_FALSE(bit_equal(a2.x0, all.x0));
  // The conversion matters: reading the v output as eps gives other images.
  BatchModelFn raw = [&](int64_t, int64_t) { return unet_model(*l.model, l.schedule); };
  BatchedSampleOptions o;
  CHECK_FALSE(bit_equal(sample_in_batches(ddim_sampler(l.schedule, 6, ddim), raw, n, image, o).x0, all.x0));
  for (int64_t i = 0; i < all.x0.numel(); i++) REQUIRE(std::isfinite(all.x0[i]));
}

TEST_CASE("sample: class labels follow the global image index across batches, and guidance changes the images") {
  TempDir dir;
  const std::string path = dir / "cond.safetensors";
  save_minimal_checkpoint(path, 10, 10);
  LoadedModel l = load_checkpoint_model(path, true);
  REQUIRE(l.model->config().num_classes == 10);
  const Shape image{1, 8, 8};
  const std::vector<int64_t> labels = class_grid_labels(3, 2);  // rows of classes 0, 1, 2
  CHECK(labels == std::vector<int64_t>{0, 0, 1, 1, 2, 2});
  // ./sample's and ./eval's predictor: image i gets labels[i], whatever batch it falls in.
  auto eps_for = [&](double w) {
    return unet_batch_model(*l.model, l.schedule, PredictionTarget::eps, SigmaChoice{}, [&](int64_t i) { return labels[i]; }, w);
  };
  auto run = [&](int64_t batch, double w) {
    BatchedSampleOptions o;
    o.batch = batch;
    return sample_in_batches(make_sampler(l.schedule, 8, SamplerChoice{}), eps_for(w), 6, image, o).x0;
  };
  Tensor whole = run(6, 2.0);
  CHECK(bit_equal(run(1, 2.0), whole));
  CHECK(bit_equal(run(4, 2.0), whole));
  // The direct call with all six labels at once.
  ModelFn direct = unet_model(*l.model, l.schedule, PredictionTarget::eps, SigmaChoice{}, &labels, 2.0);
  CHECK(bit_equal(sample(l.schedule, direct, {6, 1, 8, 8}, 8).x0, whole));
  CHECK_FALSE(bit_equal(run(6, 0.0), whole));
  // No labels: every image is drawn with the null class (unconditional draws).
  std::vector<int64_t> nulls(6, 10);
  BatchedSampleOptions o;
  Tensor unconditional =
      sample_in_batches(ddpm_sampler(l.schedule, 8), unet_batch_model(*l.model, l.schedule, PredictionTarget::eps, SigmaChoice{}), 6,
                        image, o).x0;
  CHECK(bit_equal(unconditional, sample(l.schedule, unet_model(*l.model, l.schedule, PredictionTarget::eps, SigmaChoice{}, &nulls), {6, 1, 8, 8}, 8).x0));
  // Same noise, different class: images 0 and 2 share nothing but the model, so they
  // differ; the same class at the same index does not.
  CHECK_FALSE(image_equal(whole, 0, whole, 2));
}

TEST_CASE("sample: the chain has one entry per kept t, from x_T to x_0, and its last entry is the samples") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  save_minimal_checkpoint(path, 0, 12);
  LoadedModel l = load_checkpoint_model(path, true);
  const int64_t n = 7, rows = 4, K = 5;
  BatchModelFn eps = [&](int64_t, int64_t) { return unet_model(*l.model, l.schedule); };
  BatchedSampleOptions o;
  o.batch = 3;  // the chain's rows straddle two batches
  o.chain_n = rows;
  o.sample.keep_t = evenly_spaced_t(12, 0, K);
  REQUIRE(o.sample.keep_t == std::vector<int64_t>{12, 9, 6, 3, 0});
  std::vector<int64_t> progress_t;
  o.progress = [&](int64_t first, int64_t, int64_t t) {
    if (first == 0) progress_t.push_back(t);
  };
  SampleResult r = sample_in_batches(ddpm_sampler(l.schedule, 2), eps, n, {1, 8, 8}, o);
  CHECK(progress_t == std::vector<int64_t>{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  REQUIRE(r.kept_t == o.sample.keep_t);
  REQUIRE(r.chain.size() == static_cast<size_t>(K));
  for (const Tensor& c : r.chain) CHECK(c.shape() == Shape{rows, 1, 8, 8});
  for (int64_t i = 0; i < rows; i++) {
    CHECK(image_equal(r.chain.back(), i, r.x0, i));  // x_0 of the chain is the sample
    // x_T is Algorithm 2 line 1's keyed draw: element j of image i has index i * D + j.
    CHECK(r.chain[0][i * 64 + 5] == normal(RngKey{2, make_stream(rng_sample_xT)}, static_cast<uint64_t>(i * 64 + 5)));
  }
  CHECK_FALSE(image_equal(r.chain[1], 0, r.x0, 0));

  // The figure: row r, column k is chain entry k of sample r.
  Tensor fig = chain_figure(r, 3);
  REQUIRE(fig.shape() == Shape{3 * K, 1, 8, 8});
  for (int64_t row = 0; row < 3; row++)
    for (int64_t k = 0; k < K; k++) CHECK(image_equal(fig, row * K + k, r.chain[static_cast<size_t>(k)], row));
  CHECK_THROWS_WITH_AS(chain_figure(r, rows + 1), doctest::Contains("chain_figure"), Error);
  CHECK_THROWS_AS(chain_figure(SampleResult{}, 1), Error);
}

TEST_CASE("sample: ranks (test threads for MPI's) share the images, and every rank gets the one-process bits") {
  TempDir dir;
  const std::string path = dir / "ckpt.safetensors";
  save_minimal_checkpoint(path, 10, 8);
  set_num_threads(1);
  // 7 images in batches of 2 with the chain of the first 4 over 3 ranks (2, 2 and 3 images:
  // the chain's rows straddle ranks 0 and 1); 3 images over 4 ranks (rank 0 draws none).
  for (const auto& split : {std::vector<int64_t>{7, 3, 4}, std::vector<int64_t>{3, 4, 2}}) {
    const int64_t n = split[0], chain_n = split[2];
    const int R = static_cast<int>(split[1]);
    auto run = [&](Communicator* comm) {
      LoadedModel l = load_checkpoint_model(path, true);  // each rank its own model, as each MPI process has
      BatchedSampleOptions o;
      o.batch = 2;
      o.chain_n = chain_n;
      o.sample.keep_t = {8, 4, 0};
      o.comm = comm;
      const BatchModelFn model = unet_batch_model(*l.model, l.schedule, PredictionTarget::eps, SigmaChoice{},
                                                  [](int64_t i) { return i % 10; }, 1.0);
      return sample_in_batches(ddpm_sampler(l.schedule, 4), model, n, {1, 8, 8}, o);
    };
    const SampleResult one = run(nullptr);
    testing::ThreadRanks ranks(R);
    std::vector<SampleResult> got(static_cast<size_t>(R));
    ranks.run([&](Communicator& comm) { got[comm.rank()] = run(&comm); });
    for (int r = 0; r < R; r++) {
      CAPTURE(n);
      CAPTURE(r);
      CHECK(bit_equal(got[r].x0, one.x0));
      CHECK(got[r].kept_t == one.kept_t);
      REQUIRE(got[r].chain.size() == one.chain.size());
      for (size_t k = 0; k < one.chain.size(); k++) CHECK(bit_equal(got[r].chain[k], one.chain[k]));
    }
  }
}

TEST_CASE("sample: the forward figure's t = 0 column is the input and its columns follow forward_chain") {
  Schedule s = make_schedule("linear", 20);
  Tensor x0 = randn({3, 1, 5, 4}, 21);
  for (int64_t i = 0; i < x0.numel(); i++) x0[i] = std::tanh(x0[i]);  // data in [-1, 1]
  const std::vector<int64_t> t = evenly_spaced_t(0, 20, 6);  // 0, 4, 8, 12, 16, 20
  const int64_t K = static_cast<int64_t>(t.size());
  Tensor fig = forward_figure(s, x0, t, 6);
  REQUIRE(fig.shape() == Shape{3 * K, 1, 5, 4});
  std::vector<Tensor> chain = forward_chain(s, x0, 6);
  for (int64_t row = 0; row < 3; row++) {
    CHECK(image_equal(fig, row * K, x0, row));
    for (int64_t k = 0; k < K; k++) CHECK(image_equal(fig, row * K + k, chain[static_cast<size_t>(t[k])], row));
  }
  // The noise did something: the last column is not the input.
  CHECK_FALSE(image_equal(fig, K - 1, x0, 0));
  CHECK_THROWS_WITH_AS(forward_figure(s, x0, {21}, 6), doctest::Contains("t = 21"), Error);
}

TEST_CASE("sample: a missing or foreign checkpoint gives an error naming the file") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(load_model(dir / "nope.safetensors", true, nullptr), doctest::Contains("nope.safetensors"), Error);
  const std::string other = dir / "other.safetensors";
  save_safetensors(other, {{"w", Tensor({2, 2})}});
  CHECK_THROWS_WITH_AS(load_model(other, true, nullptr), doctest::Contains("other.safetensors"), Error);
  testing::write_bytes(dir / "junk.safetensors", {1, 2, 3});
  CHECK_THROWS_WITH_AS(load_model(dir / "junk.safetensors", true, nullptr), doctest::Contains("junk.safetensors"), Error);
}

TEST_CASE("sample: the shared sampler flags are checked, and a checkpoint's variance is chosen as documented") {
  auto parse = [](const std::vector<std::string>& args, SamplerChoice* choice) {
    std::set<std::string> given;
    Flags flags("t", "");
    flags.record_given(&given);
    add_sampler_flags(flags, choice);
    REQUIRE(flags.parse(args));
    check_sampler_flags(given, *choice);
  };
  SamplerChoice c;
  parse({"--sampler", "ddim", "--ddim-steps", "20", "--spacing", "linspace", "--eta", "1", "--clip-x0"}, &c);
  CHECK(c.sampler == "ddim");
  CHECK(c.ddim_steps == 20);
  CHECK(c.eta == 1.0);
  CHECK(c.clip_x0);
  CHECK(describe_sampler(c, 1000, SigmaChoice{}) == "DDIM, 20 steps (linspace, eta 1), x_0 clipped");
  SamplerChoice d;
  parse({}, &d);
  CHECK(describe_sampler(d, 1000, SigmaChoice{false, VarianceType::fixed_small}) == "Algorithm 2, 1000 steps, fixed_small");
  CHECK(describe_sampler(d, 1000, SigmaChoice{true, VarianceType::fixed_large}) == "Algorithm 2, 1000 steps, learned_range");
  SamplerChoice e;
  CHECK_THROWS_WITH_AS(parse({"--ddim-steps", "20"}, &e), doctest::Contains("--ddim-steps needs --sampler ddim"),
                       Error);
  CHECK_THROWS_WITH_AS(parse({"--sampler", "plms"}, &e), doctest::Contains("use ddpm or ddim"), Error);
  CHECK_THROWS_WITH_AS(parse({"--sampler", "ddim", "--eta", "-1"}, &e), doctest::Contains(">= 0"), Error);
  CHECK_THROWS_WITH_AS(parse({"--sampler", "ddim", "--spacing", "leading"}, &e), doctest::Contains("leading"),
                       Error);
  // S is checked against the schedule's T before any sampling.
  SamplerChoice too_many;
  too_many.sampler = "ddim";
  too_many.ddim_steps = 11;
  CHECK_THROWS_AS(make_sampler(make_schedule("linear", 10), 0, too_many), Error);

  UNetConfig fixed = unet_config("minimal"), learned = fixed;
  learned.learned_variance = true;
  const std::map<std::string, std::string> none, small = {{"train.variance", "fixed_small"}};
  auto name = [](const SigmaChoice& c) { return sigma_name(c); };
  CHECK(name(checkpoint_sigma(fixed, none, "")) == "fixed_large");
  CHECK(name(checkpoint_sigma(fixed, small, "")) == "fixed_small");
  CHECK(name(checkpoint_sigma(learned, small, "")) == "learned_range");
  CHECK(name(checkpoint_sigma(learned, none, "fixed_large")) == "fixed_large");
  CHECK(name(checkpoint_sigma(learned, none, "learned_range")) == "learned_range");
  CHECK_THROWS_AS(checkpoint_sigma(fixed, none, "huge"), Error);
  CHECK_THROWS_WITH_AS(checkpoint_sigma(fixed, none, "learned_range"), doctest::Contains("no learned variance"), Error);
}

TEST_CASE("sampling: unet_network guides a conditional U-Net's prediction channels; r comes from the conditional pass") {
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
  UNetInference network(model);  // what unet_network runs
  auto raw = [&](const std::vector<int64_t>& ls) { return network.forward(x, t, &ls); };
  Tensor oc = raw(labels), on = raw(nulls);
  Tensor g = unet_network(model, &labels, 2.0)(x, t);
  REQUIRE(g.shape() == Shape{2, 2, 8, 8});
  for (int64_t i = 0; i < 2; i++)
    for (int64_t j = 0; j < 64; j++) {
      const int64_t e = i * 128 + j, r = i * 128 + 64 + j;
      CHECK(g[e] == 3.0f * oc[e] - 2.0f * on[e]);  // same float ops as guided_eps
      CHECK(g[r] == oc[r]);                        // r: the conditional pass's
    }
  // The label matters (the class embedding reaches the output).
  double diff = 0;
  for (int64_t j = 0; j < oc.numel(); j++) diff += std::fabs(oc[j] - on[j]);
  CHECK(diff > 1e-3);
}

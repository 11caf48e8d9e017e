#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/eval/evaluate.h"
#include "ddpm/app/figures.h"
#include "ddpm/app/sampling.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"
#include "tests/dist/thread_ranks.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

TEST_CASE("evaluate: prepare_images clamps and rounds to the 8-bit grid") {
  Tensor x = Tensor::from({5}, {-3.0f, -1.0f, 0.0f, 0.5f, 2.0f});
  Tensor y = prepare_images(x);
  // 0 -> k = round(127.5) = 128 -> 128/127.5 - 1; 0.5 -> round(191.25) = 191.
  const float want[] = {-1.0f, -1.0f, 128.0f / 127.5f - 1.0f, 191.0f / 127.5f - 1.0f, 1.0f};
  check_allclose("prepared", y.data(), want, 5, 1e-7, 0);  // float rounding of k / 127.5 - 1
  Tensor r = randn({64}, 2);
  Tensor p = prepare_images(r);
  for (int64_t i = 0; i < 64; i++) {
    const float k = (p[i] + 1.0f) * 127.5f;
    CHECK(std::fabs(k - std::round(k)) < 1e-3);  // on the grid
  }
}

TEST_CASE("evaluate: random_subset is a seeded selection of distinct rows") {
  Tensor x({10, 1, 1, 1});
  for (int64_t i = 0; i < 10; i++) x[i] = static_cast<float>(i);
  Tensor a = random_subset(x, 10, 1), b = random_subset(x, 4, 1);
  std::vector<float> all = a.to_vector();
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 10; i++) CHECK(all[i] == i);  // a permutation
  for (int64_t i = 0; i < 4; i++) CHECK(b[i] == a[i]);   // a prefix of the same permutation
  CHECK_THROWS_AS(random_subset(x, 11, 1), Error);
}

TEST_CASE("evaluate: end to end on a few samples of a minimal untrained model") {
  // A minimal U-Net at 28x28 with its parameters jittered (the zero-initialized output
  // conv would otherwise predict eps = 0), T = 10, an untrained classifier, and a
  // synthetic reference set. Checks the plumbing and the invariants, not the figures.
  UNetConfig config = unet_config("minimal");
  config.image_size = 28;
  config.attn_resolutions = {};
  UNet model(config, 1);
  for (Parameter* p : model.parameters()) {
    Tensor& w = p->var->value;
    for (int64_t i = 0; i < w.numel(); i++) w[i] += 0.05f * normal(RngKey{4, 4}, i);
  }
  const Schedule s = make_schedule("linear", 10);
  const ModelFn eps = unet_model(model, s);
  // ./eval samples as ./sample does: sample_in_batches with Algorithm 2.
  const BatchModelFn batch_eps = [&](int64_t, int64_t) { return eps; };
  BatchedSampleOptions o;
  o.batch = 4;
  Tensor samples = sample_in_batches(ddpm_sampler(s, 5), batch_eps, 6, {1, 28, 28}, o).x0;
  o.batch = 6;
  Tensor again = sample_in_batches(ddpm_sampler(s, 5), batch_eps, 6, {1, 28, 28}, o).x0;
  check_allclose("batch-split samples", samples, again, 0, 0);  // noise keyed by image index

  Classifier classifier(0);
  Tensor reference_images = prepare_images(randn({12, 1, 28, 28}, 6));
  const EvalReference ref = make_reference(classifier, reference_images, "synthetic reference", 0);
  CHECK(ref.n == 12);
  const QualityRow row = evaluate_images(classifier, ref, samples, "samples");
  CHECK(row.n == 6);
  CHECK(row.pr_reference_n == 6);
  CHECK(std::isfinite(row.fld));
  CHECK(row.fld >= -1e-6);  // a distance (up to rounding of the trace difference)
  CHECK(row.pr.precision >= 0.0);
  CHECK(row.pr.precision <= 1.0);
  CHECK(row.pr.recall >= 0.0);
  CHECK(row.pr.recall <= 1.0);
  int64_t total = 0;
  for (int64_t c : row.classes.histogram) total += c;
  CHECK(total == 6);
  CHECK(row.classes.mean_confidence >= 0.1 - 1e-6);  // the max of 10 probabilities is >= 1/10
  // The reference against itself: FLD ~ 0 and full precision/recall.
  const QualityRow self = evaluate_images(classifier, ref, reference_images, "reference");
  CHECK(std::fabs(self.fld) < 1e-3);  // float features, double statistics, traces of ~O(1)
  CHECK(self.pr.precision == 1.0);
  CHECK(self.pr.recall == 1.0);
  const std::string table = format_quality({row, self}, ref);
  CHECK(table.find("synthetic reference") != std::string::npos);
  CHECK(table.find("samples") != std::string::npos);

  // The VLB of three reference images: the parts add up to the total, all finite.
  Tensor three({3, 1, 28, 28});
  std::copy(reference_images.data(), reference_images.data() + three.numel(), three.data());
  const NllSummary nll = evaluate_nll(s, eps, three, "3 images", 2, 1, 0, /*clip_x0=*/false);
  CHECK(nll.n == 3);
  CHECK(nll.D == 784);
  CHECK(nll.T == 10);
  CHECK(std::isfinite(nll.total_bpd));
  CHECK(nll.total_bpd == doctest::Approx(nll.prior_bpd + nll.kl_sum_bpd + nll.decoder_bpd).epsilon(1e-9));
  CHECK(nll.total_nats == doctest::Approx(nll.total_bpd * 784 * std::log(2.0)).epsilon(1e-9));
  CHECK(format_nll(nll).find("L_0") != std::string::npos);
}

TEST_CASE("evaluate: the VLB over ranks (test threads for MPI's) sums one process's terms, bit for bit") {
  set_num_threads(1);
  const Schedule s = make_schedule("linear", 6);
  const Tensor images = prepare_images(randn({5, 1, 8, 8}, 9));
  auto nll = [&](Communicator* comm) {
    UNet model(unet_config("minimal"), 1);  // each rank its own model, as each MPI process has
    for (Parameter* p : model.parameters()) {
      Tensor& w = p->var->value;
      for (int64_t i = 0; i < w.numel(); i++) w[i] += 0.05f * normal(RngKey{4, 4}, i);
    }
    return evaluate_nll(s, unet_model(model, s), images, "5 images", 2, 1, 3, false, nullptr, comm);
  };
  const NllSummary one = nll(nullptr);
  for (int R : {2, 3, 6}) {  // 6 ranks for 5 images: rank 0 has none
    testing::ThreadRanks ranks(R);
    std::vector<NllSummary> got(static_cast<size_t>(R));
    ranks.run([&](Communicator& comm) { got[comm.rank()] = nll(&comm); });
    for (const NllSummary& g : got) {
      CAPTURE(R);
      CHECK(g.total_bpd == one.total_bpd);
      CHECK(g.prior_bpd == one.prior_bpd);
      CHECK(g.kl_sum_bpd == one.kl_sum_bpd);
      CHECK(g.decoder_bpd == one.decoder_bpd);
      CHECK(g.name == one.name);
      CHECK(format_nll(g) == format_nll(one));
    }
  }
}

TEST_CASE("evaluate: class agreement counts argmax matches with the requested class and skips the null class") {
  // probs [5, 3]: argmaxes 0, 2, 1, 1, 2 (row 4 ties 1 and 2 at the top: the first wins).
  Tensor probs = Tensor::from({5, 3}, {0.7f, 0.2f, 0.1f,   //
                                       0.1f, 0.3f, 0.6f,   //
                                       0.2f, 0.5f, 0.3f,   //
                                       0.0f, 0.9f, 0.1f,   //
                                       0.2f, 0.4f, 0.4f});
  // requested: 0 (agrees), 1 (no: 2), 3 = null (skipped), 1 (agrees), 2 (no: the tie goes to 1)
  const ClassAgreement a = class_agreement(probs, {0, 1, 3, 1, 2});
  CHECK(a.counted == 4);
  CHECK(a.agree == 2);
  CHECK(a.rate() == 0.5);  // 2 / 4, exact in binary
  CHECK(a.per_class_counted == std::vector<int64_t>{1, 2, 1});
  CHECK(a.per_class_agree == std::vector<int64_t>{1, 1, 0});
  // All null: nothing counted, and the report can say so.
  CHECK(class_agreement(probs, {3, 3, 3, 3, 3}).counted == 0);
  CHECK(format_agreement(a, "x").find("2 / 4 = 50.00%") != std::string::npos);
  CHECK_THROWS_AS(class_agreement(probs, {0, 1}), Error);  // one label per row
}

TEST_CASE("evaluate: labels outside 0..K are refused by class_agreement, not counted as the null class") {
  Tensor probs = Tensor::from({3, 3}, {0.7f, 0.2f, 0.1f, 0.1f, 0.3f, 0.6f, 0.2f, 0.5f, 0.3f});
  CHECK(class_agreement(probs, {0, 3, 1}).counted == 2);  // 3 = K is the null class
  CHECK_THROWS_WITH_AS(class_agreement(probs, {0, 4, 1}), doctest::Contains("label 4 of image 1 is neither a class 0..2 nor the null class 3"),
                       Error);
  CHECK_THROWS_WITH_AS(class_agreement(probs, {0, 1, -1}), doctest::Contains("label -1 of image 2"), Error);
}

TEST_CASE("evaluate: a samples file with a NaN image or a bad label is refused, naming the file and the first bad index") {
  TempDir dir;
  const int64_t N = 5;
  Tensor samples = randn({N, 1, 28, 28}, 8);
  for (int64_t i = 0; i < samples.numel(); i++) samples[i] = std::tanh(samples[i]);
  const Tensor labels = Tensor::from({N}, {0, 9, 10, 3, 10});  // 10: the null class
  const std::string good = dir / "good.safetensors";
  save_safetensors(good, {{"samples", samples}, {"labels", labels}});
  const SamplesFile f = load_samples(good);
  CHECK(f.samples.shape() == Shape{N, 1, 28, 28});
  CHECK(f.labels == std::vector<int64_t>{0, 9, 10, 3, 10});
  save_safetensors(dir / "unlabelled.safetensors", {{"samples", samples}});
  CHECK(load_samples(dir / "unlabelled.safetensors").labels.empty());

  // A non-finite pixel: before, prepare_images clamped NaN to -1 and ./eval reported the
  // images (precision 1.0 for all-black sets). Index 3 * 784 + 5 is in image 3.
  for (float v : {NAN, INFINITY, -INFINITY}) {
    Tensor bad = samples.clone();
    bad[3 * 784 + 5] = v;
    bad[4 * 784] = v;  // only the first is named
    const std::string path = dir / "nan.safetensors";
    save_safetensors(path, {{"samples", bad}});
    std::ostringstream want;
    want << path << ": tensor \"samples\" has a non-finite value (" << v << " at index 2357, image 3)";
    CHECK_THROWS_WITH_AS(load_samples(path), doctest::Contains(want.str().c_str()), Error);
    // The library's own entry point refuses them too, naming the set.
    Classifier classifier(0);
    const EvalReference ref = make_reference(classifier, samples, "ref");
    CHECK_THROWS_WITH_AS(evaluate_images(classifier, ref, bad, "the bad set"),
                         doctest::Contains("the bad set has a non-finite value"), Error);
  }

  // Labels that are not a class 0..9 or the null class 10: before, 11 and -1 were counted
  // as null, and 2.5 was rounded.
  struct Case {
    float value;
    const char* shown;
  };
  for (const Case& c : {Case{11, "11"}, Case{-1, "-1"}, Case{2.5f, "2.5"}, Case{NAN, "nan"}, Case{1e9f, "1e+09"}}) {
    Tensor bad = labels.clone();
    bad[2] = c.value;
    const std::string path = dir / "labels.safetensors";
    save_safetensors(path, {{"samples", samples}, {"labels", bad}});
    const std::string want = path + ": tensor \"labels\" has " + c.shown + " at index 2, which is neither a class 0..9 nor the null class 10";
    CHECK_THROWS_WITH_AS(load_samples(path), doctest::Contains(want.c_str()), Error);
  }
  // The shape checks name the file too.
  save_safetensors(dir / "shape.safetensors", {{"samples", Tensor({N, 1, 8, 8})}});
  CHECK_THROWS_WITH_AS(load_samples(dir / "shape.safetensors"), doctest::Contains("shape.safetensors: tensor \"samples\" is [5, 1, 8, 8]"),
                       Error);
}

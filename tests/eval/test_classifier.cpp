#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/eval/classifier.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/core/parallel.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

namespace {
// n synthetic 28x28 "digits" in [-1, 1]: class c lights a 6x6 block at a class-dependent
// place on a noisy dark background, so a few steps of training can separate them.
void synthetic(int64_t n, Tensor& images, std::vector<uint8_t>& labels) {
  images = Tensor({n, 1, 28, 28});
  labels.resize(n);
  for (int64_t i = 0; i < n; i++) {
    const int c = static_cast<int>(i % 10);
    labels[i] = static_cast<uint8_t>(c);
    for (int64_t p = 0; p < 784; p++) images[i * 784 + p] = -1.0f + 0.2f * uniform(RngKey{3, 9}, i * 784 + p);
    const int64_t y0 = 2 + 8 * (c / 4), x0 = 2 + 6 * (c % 4);
    for (int64_t y = y0; y < y0 + 6; y++)
      for (int64_t x = x0; x < x0 + 6; x++) images[i * 784 + y * 28 + x] = 1.0f;
  }
}

std::vector<float> weights(Classifier& m) {
  std::vector<float> w;
  for (Parameter* p : m.params()) w.insert(w.end(), p->var->value.data(), p->var->value.data() + p->var->value.numel());
  return w;
}
}  // namespace

TEST_CASE("classifier: shapes of features and logits, and errors") {
  Classifier m(0);
  Tape tape = Tape::no_grad();
  Classifier::Output out = m.forward(tape, constant(randn({3, 1, 28, 28}, 1)));
  CHECK(out.features->value.shape() == Shape{3, 128});
  CHECK(out.logits->value.shape() == Shape{3, 10});
  for (int64_t i = 0; i < out.features->value.numel(); i++) CHECK(out.features->value[i] >= 0.0f);  // after ReLU
  CHECK_THROWS_AS(m.forward(tape, constant(Tensor({3, 1, 27, 28}))), Error);
  size_t count = 0;
  for (Parameter* p : m.params()) count += p->var->value.numel();
  CHECK(count == 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 128 * 10 + 10);
}

TEST_CASE("classifier: training is bit-identical for a seed and any thread count, and learns") {
  Tensor images;
  std::vector<uint8_t> labels;
  synthetic(160, images, labels);
  ClassifierTrainConfig config;
  config.epochs = 2;  // 2 x 5 steps of 32: two epoch permutations and two sets of shifts
  config.batch = 32;
  config.seed = 7;
  const int threads = num_threads();
  std::vector<double> losses;
  Classifier a(7), b(7), c(8);
  train_classifier(a, images, labels, config, [&](int64_t, int64_t, double loss) { losses.push_back(loss); });
  set_num_threads(1);
  train_classifier(b, images, labels, config);
  set_num_threads(threads);
  config.seed = 8;
  train_classifier(c, images, labels, config);
  const std::vector<float> wa = weights(a), wb = weights(b), wc = weights(c);
  CHECK(wa == wb);  // exact: every kernel is thread-count independent, the data order is seeded
  CHECK(wa != wc);  // another seed, other weights
  REQUIRE(losses.size() == 1);  // reported once at the end (10 steps < 100)
  CHECK(std::isfinite(losses[0]));
  // It learns: the cross-entropy on the training images falls from the initial model's.
  auto mean_nll = [&](const Classifier& m) {
    const Tensor probs = classify(m, images, 100).probs;
    double s = 0;
    for (int64_t n = 0; n < images.size(0); n++) s -= std::log(std::max(probs[n * 10 + labels[n]], 1e-30f));
    return s / static_cast<double>(images.size(0));
  };
  const double before = mean_nll(Classifier(7)), after = mean_nll(a);
  CHECK_MESSAGE(after < before - 0.1, "cross-entropy " << before << " -> " << after);  // 10 steps: a clear drop
}

TEST_CASE("classifier: classify in batches equals one batch; save and load round trip") {
  Classifier m(3);
  Tensor x = randn({7, 1, 28, 28}, 4);
  ClassifierOutputs one = classify(m, x, 7), split = classify(m, x, 3);
  check_allclose("features", split.features, one.features, 0, 0);  // exact: per-image arithmetic
  check_allclose("probs", split.probs, one.probs, 0, 0);
  for (int64_t n = 0; n < 7; n++) {
    double s = 0;
    for (int64_t k = 0; k < 10; k++) s += one.probs[n * 10 + k];
    CHECK(s == doctest::Approx(1.0).epsilon(1e-5));  // float softmax
  }
  TempDir dir;
  save_classifier(dir / "c.safetensors", m, {{"classifier.test_accuracy", "0.5"}});
  std::map<std::string, std::string> meta;
  auto loaded = load_classifier(dir / "c.safetensors", &meta);
  CHECK(meta.at("classifier.test_accuracy") == "0.5");
  check_allclose("loaded features", classify(*loaded, x).features, one.features, 0, 0);
  // A safetensors file that is not a classifier is refused by name.
  save_safetensors(dir / "other.safetensors", {{"x", Tensor({2})}});
  CHECK_THROWS_WITH_AS(load_classifier(dir / "other.safetensors"), doctest::Contains("not an evaluation classifier"),
                       Error);
  // A non-finite weight is refused naming the tensor (before, it gave NaN features and FLD).
  Parameter* p = m.params()[0];
  p->var->value[1] = NAN;
  save_classifier(dir / "nan.safetensors", m);
  const std::string message = "nan.safetensors: tensor " + p->name + " has a non-finite value (nan at index 1)";
  CHECK_THROWS_WITH_AS(load_classifier(dir / "nan.safetensors"), doctest::Contains(message.c_str()), Error);
}

#include "ddpm/eval/classifier.h"

#include <algorithm>
#include <numeric>

#include "ddpm/core/check.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/ops/cross_entropy.h"
#include "ddpm/ops/pool.h"
#include "ddpm/train/optim.h"

namespace ddpm {

namespace {
enum : uint64_t {
  rng_classifier_init = 0xc1a501,     // parameter initialization
  rng_classifier_shuffle = 0xc1a502,  // epoch e's data order: make_stream(rng_classifier_shuffle, e)
  rng_classifier_shift = 0xc1a503,    // epoch e's shifts: make_stream(rng_classifier_shift, e), index i
};

// out[y, x] = in[y - dy, x - dx], -1 (background) where that falls outside the image.
void shift_image(float* out, const float* in, int64_t dy, int64_t dx) {
  for (int64_t y = 0; y < 28; y++)
    for (int64_t x = 0; x < 28; x++) {
      const int64_t sy = y - dy, sx = x - dx;
      out[y * 28 + x] = (sy >= 0 && sy < 28 && sx >= 0 && sx < 28) ? in[sy * 28 + sx] : -1.0f;
    }
}
}  // namespace

// One generator for the whole model: the draws are conv1, conv2, fc1, fc2 (weight then
// bias each), with PyTorch's default uniform initialization (see nn.h).
Classifier::Classifier(uint64_t seed) {
  Generator gen(seed, make_stream(rng_classifier_init));
  conv1 = Conv2d("conv1", 1, 32, 3, 1, 1, gen);
  conv2 = Conv2d("conv2", 32, 64, 3, 1, 1, gen);
  fc1 = Linear("fc1", 64 * 7 * 7, feature_dim, gen);
  fc2 = Linear("fc2", feature_dim, num_classes, gen);
}

Classifier::Output Classifier::forward(Tape& tape, const Var& x) const {
  const Shape& s = x->value.shape();
  DDPM_CHECK(s.size() == 4 && s[1] == 1 && s[2] == image_size && s[3] == image_size,
             "Classifier::forward: input " << to_string(s) << " must be [N, 1, 28, 28]");
  const int64_t N = s[0];
  Var h = max_pool2x2(tape, relu(tape, conv1(tape, x)));  // [N, 32, 14, 14]
  h = max_pool2x2(tape, relu(tape, conv2(tape, h)));      // [N, 64, 7, 7]
  // flatten: a reshape shares storage; the grad flows back through a copy-free alias.
  Var flat = tape.record("flatten", h->value.reshape({N, 64 * 7 * 7}), {h}, [h](Node& o) {
    float* dh = h->grad_ref().data();
    for (int64_t i = 0; i < o.grad.numel(); i++) dh[i] += o.grad[i];  // flat = h, reshaped
  });
  Output out;
  out.features = relu(tape, fc1(tape, flat));  // [N, 128]
  out.logits = fc2(tape, out.features);        // [N, 10]
  return out;
}

ParamList Classifier::params() {
  ParamList ps;
  conv1.collect(ps);
  conv2.collect(ps);
  fc1.collect(ps);
  fc2.collect(ps);
  return ps;
}

static void check_train_inputs(const Tensor& images, const std::vector<uint8_t>& labels,
                               const ClassifierTrainConfig& config) {
  const Shape& s = images.shape();
  DDPM_CHECK(s.size() == 4 && s[1] == 1 && s[2] == Classifier::image_size && s[3] == Classifier::image_size &&
                 static_cast<int64_t>(labels.size()) == s[0] && s[0] > 0,
             "train_classifier: images " << to_string(s) << " must be [N, 1, 28, 28] with N = " << labels.size()
                                         << " labels");
  DDPM_CHECK(config.epochs >= 1 && config.batch >= 1 && config.lr > 0 && config.max_shift >= 0 && config.max_shift < 28,
             "train_classifier: epochs " << config.epochs << ", batch " << config.batch << ", lr " << config.lr
                                         << " must all be positive");
}

// The epoch's order of the N images: Fisher-Yates with the epoch's own stream.
static void shuffle_epoch(std::vector<int64_t>& perm, uint64_t seed, int64_t epoch) {
  const int64_t N = static_cast<int64_t>(perm.size());
  std::iota(perm.begin(), perm.end(), 0);
  Generator gen(seed, make_stream(rng_classifier_shuffle, static_cast<uint64_t>(epoch)));
  for (int64_t i = N - 1; i > 0; i--) std::swap(perm[i], perm[gen.below(static_cast<uint64_t>(i + 1))]);
}

// Batch b of the epoch into x [B, 1, 28, 28] and y: each image shifted by up to max_shift
// pixels each way, the shift keyed by (seed, epoch, position in the epoch).
static void fill_batch(Tensor& x, std::vector<int64_t>& y, const Tensor& images, const std::vector<uint8_t>& labels,
                       const std::vector<int64_t>& perm, int64_t b, int64_t epoch, const ClassifierTrainConfig& config) {
  const int64_t B = x.size(0), image_numel = 28 * 28;
  for (int64_t i = 0; i < B; i++) {
    const int64_t src = perm[b * B + i];
    const uint64_t r = rng_bits(config.seed, make_stream(rng_classifier_shift, static_cast<uint64_t>(epoch)),
                                static_cast<uint64_t>(b * B + i));
    const uint64_t span = static_cast<uint64_t>(2 * config.max_shift + 1);
    const int64_t dy = static_cast<int64_t>(r % span) - config.max_shift;
    const int64_t dx = static_cast<int64_t>((r >> 32) % span) - config.max_shift;
    shift_image(x.data() + i * image_numel, images.data() + src * image_numel, dy, dx);
    y[i] = labels[src];
  }
}

void train_classifier(Classifier& model, const Tensor& images, const std::vector<uint8_t>& labels,
                      const ClassifierTrainConfig& config, const ClassifierProgress& progress) {
  check_train_inputs(images, labels, config);
  const int64_t N = images.size(0), B = std::min(config.batch, N);
  const int64_t steps_per_epoch = N / B;  // the last partial batch of an epoch is dropped
  const int64_t steps = steps_per_epoch * config.epochs;
  ParamList params = model.params();
  AdamConfig adam_config;
  adam_config.lr = config.lr;
  Adam adam(params, adam_config);

  std::vector<int64_t> perm(N);
  Tensor x({B, 1, 28, 28});
  std::vector<int64_t> y(B);
  double loss_sum = 0.0;
  int64_t loss_count = 0;
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < config.epochs; epoch++) {
    shuffle_epoch(perm, config.seed, epoch);
    for (int64_t b = 0; b < steps_per_epoch; b++) {
      fill_batch(x, y, images, labels, perm, b, epoch, config);
      zero_grad(params);
      Tape tape;
      Classifier::Output out = model.forward(tape, constant(x));
      Var loss = cross_entropy(tape, out.logits, y);
      tape.backward(loss);
      // lr_k = lr (1 - (k - 1) / steps) for k = 1..steps: linear decay, never exactly 0.
      adam.step(config.lr * (1.0 - static_cast<double>(step) / steps));
      step++;
      loss_sum += loss->value[0];
      loss_count++;
      if (progress && (step % 100 == 0 || step == steps)) {
        progress(step, steps, loss_sum / loss_count);
        loss_sum = 0.0;
        loss_count = 0;
      }
    }
  }
}

ClassifierOutputs classify(const Classifier& model, const Tensor& images, int64_t batch) {
  const Shape& s = images.shape();
  DDPM_CHECK(s.size() == 4 && s[1] == 1 && s[2] == 28 && s[3] == 28 && batch >= 1,
             "classify: images " << to_string(s) << " must be [N, 1, 28, 28] (batch " << batch << ")");
  const int64_t N = s[0], image_numel = 28 * 28;
  ClassifierOutputs out{Tensor({N, Classifier::feature_dim}), Tensor({N, Classifier::num_classes})};
  for (int64_t b0 = 0; b0 < N; b0 += batch) {
    const int64_t B = std::min(batch, N - b0);
    Tensor x({B, 1, 28, 28});
    std::copy(images.data() + b0 * image_numel, images.data() + (b0 + B) * image_numel, x.data());
    Tape tape = Tape::no_grad();
    Classifier::Output o = model.forward(tape, constant(x));
    std::copy(o.features->value.data(), o.features->value.data() + B * Classifier::feature_dim,
              out.features.data() + b0 * Classifier::feature_dim);
    softmax_forward(out.probs.data() + b0 * Classifier::num_classes, o.logits->value.data(), B,
                    Classifier::num_classes);
  }
  return out;
}

double classifier_accuracy(const Tensor& probs, const std::vector<uint8_t>& labels) {
  const int64_t N = probs.size(0), K = probs.size(1);
  DDPM_CHECK(static_cast<int64_t>(labels.size()) == N && N > 0,
             "classifier_accuracy: probs " << probs.shape_str() << " for " << labels.size() << " labels");
  int64_t correct = 0;
  for (int64_t n = 0; n < N; n++) {
    const float* p = probs.data() + n * K;
    if (std::max_element(p, p + K) - p == labels[n]) correct++;
  }
  return static_cast<double>(correct) / N;
}

void save_classifier(const std::string& path, Classifier& model, std::map<std::string, std::string> metadata) {
  NamedTensors tensors;
  for (Parameter* p : model.params()) tensors.emplace_back(p->name, p->var->value);
  metadata["format"] = "ddpm-mnist-classifier";
  save_safetensors(path, tensors, metadata);
}

std::unique_ptr<Classifier> load_classifier(const std::string& path, std::map<std::string, std::string>* metadata) {
  SafeTensors st = load_safetensors(path);
  auto format = st.metadata.find("format");
  DDPM_CHECK(format != st.metadata.end() && format->second == "ddpm-mnist-classifier",
             path << ": not an evaluation classifier (metadata \"format\" is "
                  << (format == st.metadata.end() ? std::string("absent") : "'" + format->second + "'")
                  << "); train one with ./eval --train-classifier");
  auto model = std::make_unique<Classifier>(0);
  std::vector<std::pair<std::string, Shape>> expected;
  for (Parameter* p : model->params()) expected.emplace_back(p->name, p->var->value.shape());
  check_tensor_shapes(st, expected, "was it written by another version of the classifier?", false);
  for (const auto& nt : st.tensors) {
    const int64_t bad = first_non_finite(nt.second);
    DDPM_CHECK(bad < 0, path << ": tensor " << nt.first << " has a non-finite value (" << nt.second[bad] << " at index "
                             << bad << "); the file is corrupt: train it again with ./eval --train-classifier");
  }
  for (Parameter* p : model->params()) p->var->value.copy_(st.at(p->name));
  if (metadata) *metadata = st.metadata;
  return model;
}

}  // namespace ddpm

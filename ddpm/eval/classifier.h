// classifier.h: the MNIST classifier that evaluation measures samples with.
//
// A LeNet-style CNN built from this library's ops, on [N, 1, 28, 28] images in [-1, 1]
// (the range the diffusion model samples in):
//   h = max_pool2x2(relu(conv1(x)))        conv 1 -> 32, 3x3, pad 1     [N, 32, 14, 14]
//   h = max_pool2x2(relu(conv2(h)))        conv 32 -> 64, 3x3, pad 1    [N, 64, 7, 7]
//   features = relu(fc1(flatten(h)))       3136 -> 128                   [N, 128]
//   logits = fc2(features)                 128 -> 10                     [N, 10]
// `features` is the penultimate layer: the space the Frechet distance (FLD), precision
// and recall are computed in.
//
// Training (train_classifier): softmax cross-entropy, Adam (PyTorch defaults, lr 1e-3)
// with the learning rate decayed linearly to 0 over the run, batch 64, 5 epochs, a seeded
// permutation of the training set each epoch, and each image shifted by a random
// (dy, dx) in [-2, 2]^2 (background -1 fills in). Without the shifts this network
// measured 98.97% test accuracy after 3 epochs (training loss 0.02: it overfits); with
// them 3 epochs gave 99.07%, so the default is 5 epochs, for margin.
// Every random choice is a pure function of the seed:
//   initialization       Generator(seed, make_stream(rng_classifier_init))
//   epoch e's order      Generator(seed, make_stream(rng_classifier_shuffle, e))
//   shift of image i     rng_bits(seed, make_stream(rng_classifier_shift, e), i)
// and every kernel is bit-identical for any thread count, so a seed fixes the weights
// bit for bit.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/model/nn.h"

namespace ddpm {

class Classifier {
 public:
  static constexpr int64_t image_size = 28;
  static constexpr int64_t feature_dim = 128;
  static constexpr int64_t num_classes = 10;

  explicit Classifier(uint64_t seed = 0);
  Classifier(const Classifier&) = delete;
  Classifier& operator=(const Classifier&) = delete;

  struct Output {
    Var features;  // [N, 128]
    Var logits;    // [N, 10]
  };
  Output forward(Tape& tape, const Var& x) const;  // x [N, 1, 28, 28]
  ParamList params();

  Conv2d conv1, conv2;
  Linear fc1, fc2;
};

struct ClassifierTrainConfig {
  int64_t epochs = 5;
  int64_t batch = 64;
  double lr = 1e-3;   // peak; decays linearly to 0 at the last step
  int64_t max_shift = 2;  // augmentation: each training image is shifted by up to this many pixels
  uint64_t seed = 0;
};

// (step, total steps, mean loss since the previous report); called every 100 steps and
// at the end.
using ClassifierProgress = std::function<void(int64_t step, int64_t steps, double loss)>;

// Trains model in place on images [N, 1, 28, 28] in [-1, 1] and labels (N values 0..9).
void train_classifier(Classifier& model, const Tensor& images, const std::vector<uint8_t>& labels,
                      const ClassifierTrainConfig& config, const ClassifierProgress& progress = nullptr);

struct ClassifierOutputs {
  Tensor features;  // [N, 128]
  Tensor probs;     // [N, 10] softmax
};
// Inference in batches (no tape recording).
ClassifierOutputs classify(const Classifier& model, const Tensor& images, int64_t batch = 500);

// Fraction of rows whose argmax matches the label.
double classifier_accuracy(const Tensor& probs, const std::vector<uint8_t>& labels);

// A safetensors file with the parameters under their names ("conv1.weight", ...) and
// metadata "format" = "ddpm-mnist-classifier" plus the caller's keys (the training
// config and the measured test accuracy). load_classifier checks the format key, every
// name and shape (no extra tensor) and that every value is finite, before copying.
void save_classifier(const std::string& path, Classifier& model, std::map<std::string, std::string> metadata = {});
std::unique_ptr<Classifier> load_classifier(const std::string& path,
                                            std::map<std::string, std::string>* metadata = nullptr);

}  // namespace ddpm

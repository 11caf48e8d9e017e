// train.h: the training loop's state, one Algorithm 1 step at a time, and exact
// checkpoints. ./train_mnist is a thin shell around Trainer; the tests drive it
// directly (the resume-equivalence and smoke tests).
//
// Everything random in a step is a pure function of (seed, step, index): the data order
// (a seeded permutation per epoch), t and eps (diffusion.h's training_step), dropout
// masks and label drops. A checkpoint stores the weights, the Adam moments, the EMA
// weights and the counters, so N steps + save + load + M steps equals N + M steps,
// bit for bit.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/check.h"
#include "ddpm/diffusion.h"
#include "ddpm/figures.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/optim.h"
#include "ddpm/timestep_sampler.h"
#include "ddpm/unet.h"

namespace ddpm {

struct TrainConfig {
  std::string model = "tiny";
  int64_t batch = 64;
  double lr = 1e-3;
  int64_t warmup = 200;        // linear LR warm-up steps
  double grad_clip = 1.0;      // max global gradient norm; 0 disables
  double ema = 0.999;          // EMA decay (with warm-up, see optim.h)
  std::string schedule = "linear";
  int64_t T = 1000;
  uint64_t seed = 0;
  std::string loss = "simple";          // simple (L_simple) or weighted (L_t with its weight)
  std::string variance = "fixed_large"; // sigma_t^2 for the weighted loss and for sampling
  bool conditional = false;             // class-conditional with classifier-free guidance
  double p_uncond = 0.1;                // label dropped to null with this probability
  // Beyond Algorithm 2 (README), off by default. Written to the metadata only when not the
  // default, so a default run's checkpoint is unchanged and old checkpoints still load.
  std::string predict = "eps";          // eps, x0 or v (targets.h)
  bool learned_variance = false;        // Improved DDPM's learned Sigma, L_hybrid (learned_variance.h)
  std::string timesteps = "uniform";    // uniform (Algorithm 1) or importance (timestep_sampler.h)

  std::map<std::string, std::string> to_metadata() const;  // keys "train.*"
  // Reads and validates the "train.*" keys; errors name `source` (the file) and the key.
  static TrainConfig from_metadata(const std::map<std::string, std::string>& m,
                                   const std::string& source = "checkpoint");
  // Values in range (batch, T and the rates bounded, names known); the Trainer calls it.
  void validate() const;
};

// Images [N, 1, S, S] in [-1, 1] and their labels (0..9).
struct Dataset {
  Tensor images;
  std::vector<uint8_t> labels;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

// Raised when the loss or the gradients are not finite; what() is the report.
struct NonFiniteError : Error {
  using Error::Error;
};

class Trainer {
 public:
  Trainer(const TrainConfig& config, Dataset data, const UNetConfig* model_config = nullptr);

  // One step of Algorithm 1 on the next batch, Adam, EMA. Returns the loss. Throws
  // NonFiniteError (nothing updated) if the loss or a gradient is NaN or Inf.
  double step();

  int64_t steps_done() const { return step_; }
  int64_t epoch() const { return epoch_; }
  double epoch_progress() const;  // epochs done, fractional
  const TrainConfig& config() const { return config_; }
  const Schedule& schedule() const { return schedule_; }
  UNet& model() { return *model_; }
  EMA& ema() { return *ema_; }

  // Atomic (temp file, fsync, rename): a crash leaves the previous file intact.
  void save_checkpoint(const std::string& path);
  // Restores everything saved; the dataset must be the one trained on (its size is checked).
  // Everything is validated first (format, every config key, tensor names and shapes,
  // counters): a refused file leaves the trainer unchanged, and the error names the file
  // and the first key that differs.
  void load_checkpoint(const std::string& path);
  void load_checkpoint(const SafeTensors& checkpoint);  // st.source names it in errors

  // Debug (--inject-nan-at): step number `step` (1-based, as in reports) puts a NaN in
  // the first pixel of sample `sample` of its batch, to exercise the non-finite report.
  void inject_nan(int64_t step, int64_t sample = 0);

  // A copy of the model holding the EMA weights, for sampling (see unet_eps_fn).
  std::unique_ptr<UNet> ema_model() const;

 private:
  void next_batch(Tensor& x0, std::vector<int64_t>& labels);
  const std::vector<int64_t>& permutation(int64_t epoch);

  TrainConfig config_;
  Dataset data_;
  Schedule schedule_;
  std::unique_ptr<UNet> model_;
  ParamList params_;
  std::unique_ptr<Adam> adam_;
  std::unique_ptr<EMA> ema_;
  std::unique_ptr<TimestepSampler> timestep_sampler_;  // --timesteps importance only
  int64_t step_ = 0;
  int64_t epoch_ = 0, position_ = 0;  // data cursor: next sample is permutation(epoch_)[position_]
  int64_t perm_epoch_ = -1;
  int64_t nan_step_ = 0, nan_sample_ = 0;  // inject_nan; step 0: never
  std::vector<int64_t> perm_;
};

// An eps-predictor from any UNet (no grad, eval mode). For a conditional model, labels
// (size N; num_classes means null) and the guidance weight w give classifier-free
// guidance: (1 + w) eps(x, c) - w eps(x, null) (guidance.h), on the eps channels only. A
// learned-variance model's raw channel r becomes ModelOutput.v = (r + 1) / 2 (improved-
// diffusion's convention, learned_variance.h). The model must outlive the function.
EpsFn unet_eps_fn(UNet& model, const std::vector<int64_t>* labels = nullptr, double guidance = 0.0);

// The prediction target a checkpoint's model was trained on ("train.predict"; eps when absent).
// Wrap unet_eps_fn with targets.h's as_eps_fn(schedule, fn, target) to sample from it.
PredictionTarget prediction_target(const std::map<std::string, std::string>& metadata);

// The sigma_t^2 to sample a checkpoint's model with: `requested` (a --variance flag) when
// given, else learned_range for a learned-variance model, else train.variance (fixed_large
// when the metadata has none).
VarianceType checkpoint_variance(const UNetConfig& config, const std::map<std::string, std::string>& metadata,
                                 const std::string& requested);

// The predictor of images [first, first + count) of a batched run (sample_in_batches) from
// a model: image i gets class label_of(i) when the model is conditional (no label_of: the
// null class, unconditional draws), guided with weight w, and is seen as an eps-predictor
// whatever the model predicts (as_eps_fn). The model and schedule must outlive it.
BatchEpsFn unet_batch_eps_fn(UNet& model, const Schedule& s, PredictionTarget predict,
                             std::function<int64_t(int64_t)> label_of = nullptr, double guidance = 0.0);

// Loads the model weights of a checkpoint (EMA weights if present and use_ema), building
// the UNet from the checkpoint's config. Also returns the metadata, and whether the EMA
// weights were the ones loaded.
std::unique_ptr<UNet> load_model(const std::string& path, bool use_ema, std::map<std::string, std::string>* metadata,
                                 bool* loaded_ema = nullptr);

}  // namespace ddpm

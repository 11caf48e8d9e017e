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

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/check.h"
#include "ddpm/cli.h"
#include "ddpm/diffusion.h"
#include "ddpm/figures.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/optim.h"
#include "ddpm/timestep_sampler.h"
#include "ddpm/unet.h"

namespace ddpm {

// How t is drawn in training: uniform (Algorithm 1, line 3) or importance-sampled
// (timestep_sampler.h).
enum class TimestepSampling { uniform, importance };

// Bounds of a numeric config field: lo <= v <= hi (lo < v when lo_open, v < hi when hi_open).
struct FieldBounds {
  double lo, hi;
  bool lo_open, hi_open;
};
constexpr double kUnbounded = 1e300;
constexpr FieldBounds closed(double lo, double hi) { return {lo, hi, false, false}; }
constexpr FieldBounds at_least(double lo) { return {lo, kUnbounded, false, false}; }
constexpr FieldBounds above(double lo) { return {lo, kUnbounded, true, false}; }
constexpr FieldBounds half_open(double lo, double hi) { return {lo, hi, false, true}; }
constexpr FieldBounds kNoBounds{-kUnbounded, kUnbounded, false, false};

// When a field is written to a checkpoint's metadata: always, or only when it is not the
// default (the options beyond Algorithm 2: a default run's checkpoint stays as it was, and
// checkpoints written before the option existed still load, meaning the default).
enum class MetaRule { always, when_not_default };

// THE training config: every field once, with its type, default, ./train_mnist flag,
// bounds, metadata rule and help. It drives the TrainConfig struct, the flags
// (TrainConfigFlags), to_metadata / from_metadata ("train." + name, both directions) and
// validate(). The bounds are far beyond any sensible run; they keep batch * image and the
// schedule's arrays allocatable and the step counters far from overflow. T's bound is
// kMaxT (schedule.h), the one every tool applies.
//   X(type, name, default, flag, bounds, metadata rule, help)
#define DDPM_TRAIN_CONFIG_FIELDS(X)                                                                                  \
  X(std::string, model, "tiny", "--model", kNoBounds, MetaRule::always,                                              \
    "U-Net config: tiny (1.1M params) or small (6.5M)")                                                              \
  X(int64_t, batch, 64, "--batch", closed(1, 65536), MetaRule::always, "batch size")                                 \
  X(double, lr, 1e-3, "--lr", above(0), MetaRule::always,                                                            \
    "Adam learning rate (after warm-up); with --resume it replaces the checkpoint's, recorded in its metadata")       \
  X(int64_t, warmup, 200, "--warmup", at_least(0), MetaRule::always, "linear learning-rate warm-up steps")           \
  X(double, grad_clip, 1.0, "--grad-clip", at_least(0), MetaRule::always,                                            \
    "clip the global gradient norm to this (0: off)")                                                                \
  X(double, ema, 0.999, "--ema", half_open(0, 1), MetaRule::always, "EMA decay of the weights used for sampling")    \
  X(std::string, schedule, "linear", "--schedule", kNoBounds, MetaRule::always,                                      \
    "beta schedule: linear, cosine, sigmoid or quadratic")                                                           \
  X(int64_t, T, 1000, "--T", closed(1, kMaxT), MetaRule::always, "number of diffusion steps")                        \
  X(uint64_t, seed, 0, "--seed", kNoBounds, MetaRule::always,                                                        \
    "seed for initialization, data order, t, noise and dropout")                                                     \
  X(LossType, loss, LossType::simple, "--loss", kNoBounds, MetaRule::always,                                         \
    "simple (L_simple) or weighted (L_t with its scaling term)")                                                     \
  X(VarianceType, variance, VarianceType::fixed_large, "--variance", kNoBounds, MetaRule::always,                    \
    "sigma_t^2 for sampling and the weighted loss: fixed_large or fixed_small")                                      \
  X(bool, conditional, false, "--conditional", kNoBounds, MetaRule::always,                                          \
    "class-conditional model (classifier-free guidance)")                                                            \
  X(double, p_uncond, 0.1, "--p-uncond", closed(0, 1), MetaRule::always,                                             \
    "with --conditional: probability of dropping the label")                                                         \
  X(PredictionTarget, predict, PredictionTarget::eps, "--predict", kNoBounds, MetaRule::when_not_default,            \
    "what the network predicts: eps (Algorithm 1), x0 or v (Salimans & Ho 2022)")                                    \
  X(bool, learned_variance, false, "--learned-variance", kNoBounds, MetaRule::when_not_default,                      \
    "learn Sigma (Nichol & Dhariwal 2021): L_hybrid = L_simple + 0.001 L_vlb, sampling with learned_range")          \
  X(TimestepSampling, timesteps, TimestepSampling::uniform, "--timesteps", kNoBounds, MetaRule::when_not_default,    \
    "t sampling: uniform (Algorithm 1) or importance (p_t ~ sqrt(E[L_t^2]))")

struct TrainConfig {
#define DDPM_TRAIN_CONFIG_MEMBER(T_, name, default_value, flag, bounds, rule, help) T_ name = default_value;
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_TRAIN_CONFIG_MEMBER)
#undef DDPM_TRAIN_CONFIG_MEMBER

  // Every field as "train.<name>" (the table's metadata rule decides which are written).
  std::map<std::string, std::string> to_metadata() const;
  // Reads every "train.*" key (a when_not_default field missing means its default; any other
  // missing key, or a "train.*" key not in the table, is refused) and validates; errors
  // name `source` (the file's path: there is no default, so every caller names it) and the key.
  static TrainConfig from_metadata(const std::map<std::string, std::string>& m, const std::string& source);
  // Every field within its bounds and names known, and the combinations allowed; the
  // Trainer calls it before it allocates anything. Errors name the flag.
  void validate() const;
};

// What a field is staged as for Flags (cli.h): integers as int64, double and bool as
// themselves, strings and enums as their names.
template <class T>
struct StagedFlag {
  using type = std::conditional_t<std::is_same<T, double>::value || std::is_same<T, bool>::value, T,
                                  std::conditional_t<std::is_integral<T>::value, int64_t, std::string>>;
};

// The table's fields as ./train_mnist flags. Construct before flags.parse(); then apply()
// writes the given flags into a config (enum names parsed, errors naming the flag), and
// given() lists the flags the command line set.
class TrainConfigFlags {
 public:
  TrainConfigFlags(Flags& flags, const TrainConfig& defaults = TrainConfig());
  void apply(TrainConfig& config) const;
  std::vector<std::string> given() const;

 private:
  Flags& flags_;
#define DDPM_TRAIN_CONFIG_STAGED(T_, name, default_value, flag, bounds, rule, help) typename StagedFlag<T_>::type name;
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_TRAIN_CONFIG_STAGED)
#undef DDPM_TRAIN_CONFIG_STAGED
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

// A checkpoint's counters ("state.*"). lr_history is empty unless a resume changed the
// learning rate: then it lists (step, lr) from the first step on, each lr in force from its
// step (the last one is train.lr); written as "state.lr_history" = "0:0.001,120:0.0005".
struct TrainState {
  int64_t step = 0, epoch = 0, position = 0, adam_steps = 0, ema_updates = 0, data_size = 0;
  std::vector<std::pair<int64_t, double>> lr_history;
};

// What a valid checkpoint holds, as validate_checkpoint read it.
struct CheckpointContents {
  UNetConfig model;
  TrainConfig train;
  TrainState state;
};

// Every check a training checkpoint gets, in one place (Trainer::load_checkpoint, ./ckpt_hash
// and load_model call it): the format tag and version; both configs (from_metadata) and
// their agreement; when `expect_model` / `expect_train` are given, each key equal to theirs
// (the error names the first that differs); every state.* key present and consistent; every
// tensor the model needs with its shape (timesteps.history / .count for an importance run),
// and no other; every tensor finite and adam.v.* >= 0, naming the tensor (load_model makes
// the same tensor checks on a weights file, through the same function). The one check it
// cannot make, the dataset's size against state.data_size, is the trainer's. Errors name
// st.source.
CheckpointContents validate_checkpoint(const SafeTensors& st, const UNetConfig* expect_model = nullptr,
                                       const TrainConfig* expect_train = nullptr);

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
  int64_t data_size() const { return data_.size(); }
  // The learning rate from the next step on (a resume's --lr): recorded in the state's
  // lr_history and, as train.lr, in the next checkpoint. Bounds as --lr.
  void set_lr(double lr);
  const std::vector<std::pair<int64_t, double>>& lr_history() const { return lr_history_; }
  const Schedule& schedule() const { return schedule_; }
  UNet& model() { return *model_; }
  EMA& ema() { return *ema_; }
  // --timesteps importance: the sampler of t (its p_t and loss history); nullptr otherwise.
  const TimestepSampler* timestep_sampler() const { return timestep_sampler_.get(); }

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
  std::vector<std::pair<int64_t, double>> lr_history_;  // TrainState::lr_history
};

// What a resume may change: only the learning rate (the NaN report's advice); every other
// setting is the checkpoint's.
struct ResumeOverrides {
  bool has_lr = false;
  double lr = 0;
};
struct Resumed {
  std::unique_ptr<Trainer> trainer;
  std::string path;  // the checkpoint it resumed from
};
// Resume as ./train_mnist --resume does: the first of `candidates` (newest first) that
// loads gives a Trainer built from its own configs, with its whole state; a candidate that
// does not load is skipped, passing "skipping <path>: <why>" to `warn` at once, unless it is
// the last (its error is thrown). Then the overrides apply (set_lr).
Resumed resume_trainer(const std::vector<std::string>& candidates, const Dataset& data,
                       const ResumeOverrides& overrides = {},
                       const std::function<void(const std::string&)>& warn = nullptr);

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
// weights were the ones loaded. What it accepts, checked before anything is copied: a
// training checkpoint (metadata "format") with all of validate_checkpoint's checks; or a
// weights file (config.* metadata; the weights, "ema."-prefixed EMA weights, or both). In
// both, the tensors are exactly the model's names and shapes (no extra tensor) and every
// value is finite; errors name the file and the tensor.
std::unique_ptr<UNet> load_model(const std::string& path, bool use_ema, std::map<std::string, std::string>* metadata,
                                 bool* loaded_ema = nullptr);

}  // namespace ddpm

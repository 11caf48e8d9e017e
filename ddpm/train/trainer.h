// trainer.h: the training loop's state, one Algorithm 1 step at a time, and exact
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
#include <memory>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/dataset.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/extensions/importance_sampling.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/checkpoint.h"
#include "ddpm/train/config.h"
#include "ddpm/train/optim.h"

namespace ddpm {

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
  int64_t data_size() const { return data_.size(); }
  // The learning rate from the next step on (a resume's --lr): recorded in the state's
  // lr_history and, as train.lr, in the next checkpoint. Bounds as --lr.
  void set_lr(double lr);
  const std::vector<std::pair<int64_t, double>>& lr_history() const { return lr_history_; }
  // The step training ends at (train.steps): where a decaying learning rate lands. A resume's
  // --steps, or the target --minutes chooses; recorded in the next checkpoint.
  void set_target(int64_t steps);
  // --minutes on a resume: train.minutes = m and the target step unchosen (0) until the
  // run measures its speed.
  void set_minutes(double minutes);
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

// What a resume may change: the learning rate (the NaN report's advice) and where the run
// ends (--steps, or --minutes of training from here, which chooses --steps anew); every
// other setting is the checkpoint's.
struct ResumeOverrides {
  bool has_lr = false;
  double lr = 0;
  bool has_steps = false;
  int64_t steps = 0;
  bool has_minutes = false;
  double minutes = 0;
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

}  // namespace ddpm

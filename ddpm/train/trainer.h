// trainer.h: the training loop's state, one Algorithm 1 step at a time, and exact
// checkpoints. ./train_mnist is a thin shell around Trainer; the tests drive it
// directly (the resume-equivalence and smoke tests).
//
// Everything random in a step is a pure function of (seed, step, index): the data order
// (a seeded permutation per epoch), t and eps (diffusion.h's training_step), dropout
// masks and label drops. A checkpoint stores the weights, the Adam moments, the EMA
// weights and the counters, so N steps + save + load + M steps equals N + M steps,
// bit for bit.
//
// Micro-batches and ranks (--micro-batch M, docs/scaling.md): the batch of B is K = B / M
// micro-batches, each run forward and backward on its own tape with the randomness of its
// samples' global indices and its loss scaled by 1/K; their gradients are summed in the
// canonical tree over K (ddpm/dist/tree_reduce.h). Over R ranks (distribute), rank r runs
// micro-batches [r K / R, (r + 1) K / R) and the ranks combine the tree's nodes, so every
// rank holds the gradient one process computes, and clipping, Adam and the EMA run
// identically everywhere: the same bits for any R dividing K and any thread count.
// M = 0 (the default) is one micro-batch, the whole batch: Algorithm 1's single pass.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/dataset.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/dist/communicator.h"
#include "ddpm/extensions/importance_sampling.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/model/unet.h"
#include "ddpm/train/checkpoint.h"
#include "ddpm/train/config.h"
#include "ddpm/train/optim.h"

namespace ddpm {

// Raised when the loss or the gradients are not finite; what() is the report (on every
// rank: the rank that met it sends it to the others).
struct NonFiniteError : Error {
  using Error::Error;
};
// Raised by step() when the stop flag (set_stop_flag) was up on any rank at a micro-batch
// boundary: the step was abandoned and nothing changed.
struct StepInterrupted : Error {
  using Error::Error;
};

class Trainer {
 public:
  Trainer(const TrainConfig& config, Dataset data, const UNetConfig* model_config = nullptr);

  // One step of Algorithm 1 on the next batch, Adam, EMA. Returns the loss (the batch mean).
  // Throws NonFiniteError (nothing updated) if the loss or a gradient is NaN or Inf, and
  // StepInterrupted (nothing updated) when a stop was asked.
  double step();

  // Train over the ranks of `comm` (it must outlive the Trainer); every rank must call
  // step() alike. Refuses, on every rank alike, a split that is not even: R must divide the
  // K micro-batches (so the batch too). The default is one process.
  void distribute(Communicator& comm);
  // A flag (Ctrl-C) that step() checks before each micro-batch; the ranks agree on it at the
  // end of the step, so they all stop at the same step. nullptr: none.
  void set_stop_flag(const std::atomic<bool>* stop) { stop_ = stop; }
  // K: micro-batches per step (1 with micro_batch 0).
  int64_t micro_batches() const { return config_.micro_batch > 0 ? config_.batch / config_.micro_batch : 1; }
  // Seconds spent in the ranks' collectives over every step so far (waiting for the slowest
  // rank included); 0 on one process.
  double comm_seconds() const { return comm_seconds_; }
  // FNV-1a over the step and every tensor a checkpoint holds: ranks compare it.
  uint64_t state_hash() const;

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
  // The checkpoint's bytes, as save_checkpoint writes them (rank 0 sends them on a resume).
  std::vector<uint8_t> checkpoint_bytes() const;
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
  struct StepBatch;
  struct StepShare;
  void next_batch(Tensor& x0, std::vector<int64_t>& labels);
  const std::vector<int64_t>& permutation(int64_t epoch);
  // The pieces of step(), in its order (trainer.cpp says what each does).
  StepBatch draw_batch();
  std::vector<std::vector<float>> owned_sums(const StepBatch& batch, StepShare& share);
  // Forward and backward of micro-batch m of the batch: its gradient, flattened.
  std::vector<float> micro_batch_grad(const StepBatch& batch, int64_t m, StepShare& share);
  std::vector<double> exchange_records(const StepShare& share);
  void apply_gradient(const std::vector<float>& grad);
  double batch_loss(const StepBatch& batch, const std::vector<double>& records);
  NamedTensors checkpoint_tensors() const;
  std::map<std::string, std::string> checkpoint_meta() const;

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
  SingleProcess single_;
  Communicator* comm_ = &single_;
  const std::atomic<bool>* stop_ = nullptr;
  double comm_seconds_ = 0;
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
// A Trainer built from a checkpoint's own configs, holding its whole state (what
// resume_trainer does with each candidate; MPI ranks other than 0 build theirs from the
// bytes rank 0 sends).
std::unique_ptr<Trainer> trainer_from_checkpoint(const SafeTensors& checkpoint, const Dataset& data);
Resumed resume_trainer(const std::vector<std::string>& candidates, const Dataset& data,
                       const ResumeOverrides& overrides = {},
                       const std::function<void(const std::string&)>& warn = nullptr);

}  // namespace ddpm

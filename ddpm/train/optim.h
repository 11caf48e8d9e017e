// optim.h: Adam, gradient-norm clipping, learning-rate warm-up and the EMA of weights.
//
// Adam follows torch.optim.Adam (1.13, weight_decay 0, amsgrad off) operation by
// operation, so a PyTorch run from the same gradients matches to rounding:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   step_size = lr / (1 - beta1^k)                          (bias corrections in double)
//   p -= step_size * m / (sqrt(v) / sqrt(1 - beta2^k) + eps)
// clip_grad_norm follows torch.nn.utils.clip_grad_norm_: the global L2 norm of all grads;
// if it exceeds max_norm, every grad is scaled by max_norm / (norm + 1e-6).
// EMA: shadow = d shadow + (1 - d) p, with the warm-up d_k = min(decay, (1 + k)/(10 + k))
// so short runs are not dominated by the random initialization.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/model/nn.h"

namespace ddpm {

struct AdamConfig {
  double lr = 2e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class Adam {
 public:
  Adam(const ParamList& params, AdamConfig config);
  void step(double lr);  // one update with this learning rate, from the params' grads
  int64_t steps() const { return step_; }

  // State for checkpoints: moments in parameter order, and the step count.
  std::vector<Tensor>& m() { return m_; }
  std::vector<Tensor>& v() { return v_; }
  void set_steps(int64_t k) { step_ = k; }

 private:
  ParamList params_;
  AdamConfig config_;
  std::vector<Tensor> m_, v_;
  int64_t step_ = 0;
};

// Scales all grads so their global L2 norm is at most max_norm; returns the norm before.
double clip_grad_norm(const ParamList& params, double max_norm);

// Linear warm-up from 0 to lr over warmup steps (step counts from 1).
double warmup_lr(double lr, int64_t step, int64_t warmup);

// The learning rate after warm-up: constant at the peak, or decaying from it at the end of
// warm-up to floor x peak at the target step, along a half cosine or a line:
//   p = (step - warmup) / (target - warmup), clamped to [0, 1]
//   cosine  lr = peak (floor + (1 - floor) (1 + cos(pi p)) / 2)
//   linear  lr = peak (floor + (1 - floor) (1 - p))
// target = 0 means "not chosen yet" (./train_mnist --minutes): the peak.
enum class LrSchedule { constant, cosine, linear };
const char* lr_schedule_name(LrSchedule s);          // "constant", "cosine", "linear"
LrSchedule parse_lr_schedule(const std::string& s);  // throws on an unknown name
// warmup_lr during warm-up, then the schedule's decay.
double scheduled_lr(double peak, int64_t step, int64_t warmup, LrSchedule schedule, double floor, int64_t target);

class EMA {
 public:
  // The decay at update k is min(decay, (1 + k) / (warmup + k)): a warm-up (warmup 10 is
  // the TensorFlow rule) that keeps the average to roughly the last 1/(warmup - 1) of the
  // updates until the cap is reached (2: the mean of the starting
  // weights and every update; 1: no warm-up).
  EMA(const ParamList& params, double decay, double warmup = 10);
  void update(const ParamList& params);  // after each optimizer step
  int64_t updates() const { return updates_; }
  double decay() const { return decay_; }
  std::vector<Tensor>& shadow() { return shadow_; }
  void set_updates(int64_t k) { updates_ = k; }
  // Swap the shadow weights into the parameters (and back: call twice).
  void swap_into(const ParamList& params);

 private:
  double decay_, warmup_;
  std::vector<Tensor> shadow_;
  int64_t updates_ = 0;
};

}  // namespace ddpm

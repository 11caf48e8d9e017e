// importance_sampling.h: importance-sampled timesteps (Nichol & Dhariwal 2021, Sec. 3.3):
//   L_vlb = E_{t ~ p_t} [ L_t / p_t ],   p_t ∝ sqrt(E[L_t^2]),   sum_t p_t = 1,
// with E[L_t^2] estimated from the last 10 values of the loss seen at t. Until every t has 10
// values, t is uniform (the paper's warm-up). An option: Algorithm 1 line 3's uniform t stays
// the default.
//
// As improved-diffusion's LossSecondMomentResampler (resample.py): p_t is mixed with the
// uniform distribution, p_t <- (1 - 0.001) p_t + 0.001 / T, so no t starves; the per-sample
// weight is 1 / (T p_t) (1 while uniform), which keeps the weighted loss an unbiased
// estimate of the uniform average; the history is updated with each sample's loss before
// weighting (the training loss, as improved-diffusion does with losses["loss"]).
//
// Deterministic: t_i is drawn by inverting the CDF of p with uniform_double(key, index i), and
// p is computed in double in a fixed order. The history (float32, as the losses are) and the
// counts are the sampler's whole state: state()/set_state() give them as tensors, for exact
// checkpoints (ddpm/train/checkpoint.cpp stores them).
#pragma once

#include <cstdint>
#include <vector>

#include "ddpm/core/rng.h"
#include "ddpm/core/tensor.h"

namespace ddpm {

class TimestepSampler {
 public:
  static constexpr int64_t kHistory = 10;     // values of L_t kept per t
  static constexpr double kUniformProb = 1e-3;  // mixed-in uniform probability mass

  explicit TimestepSampler(int64_t T);

  int64_t T() const { return T_; }
  bool warmed_up() const;  // every t has kHistory values
  // p_t for t = 1..T (index t; entry 0 is 0). Uniform until warmed up.
  std::vector<double> probabilities() const;
  // t_i (1..T) and w_i = 1 / (T p_{t_i}) for i = 0..N-1, from uniform_double(key, first_index + i).
  void sample(RngKey key, int64_t first_index, int64_t N, std::vector<int64_t>& t, std::vector<double>& weights) const;
  // Appends each loss to its t's history (dropping the oldest once full).
  void update(const std::vector<int64_t>& t, const std::vector<double>& losses);

  // history [T, kHistory] (row t-1, oldest first) and count [T] (values held, 0..kHistory).
  void state(Tensor& history, Tensor& count) const;
  void set_state(const Tensor& history, const Tensor& count);

 private:
  int64_t T_;
  std::vector<float> history_;  // [T][kHistory], row t-1
  std::vector<int64_t> count_;  // [T]
};

}  // namespace ddpm

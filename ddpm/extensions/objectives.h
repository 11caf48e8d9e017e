// objectives.h: training objectives beyond Algorithm 1's L_simple, built from the paper's
// pieces (uniform_timesteps, keyed_normal, q_sample, the losses):
//
//   loss weighted       the true L_{t-1} with its scaling term (Ho et al. 2020, Eq. 12; the
//                       "true variational bound" row of their Table 2)
//   predict x0 | v      the MSE against x_0 or the velocity v instead of eps (prediction_targets.h)
//   learned variance    L_hybrid = L_simple + lambda L_vlb, the network also outputs r
//                       (learned_variance.h)
//   importance t        t drawn from p_t ~ sqrt(E[L_t^2]), each sample's loss weighted by
//                       1 / (T p_t) (importance_sampling.h)
//
// With every option at its default the objective is Algorithm 1, and objective_step calls
// ddpm/diffusion/algorithms.h's training_step itself, so the default run's bits are the paper's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/core/tape.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/extensions/importance_sampling.h"
#include "ddpm/extensions/prediction_targets.h"

namespace ddpm {

enum class LossType { simple, weighted };
const char* loss_name(LossType l);          // "simple", "weighted"
LossType parse_loss(const std::string& s);  // throws on an unknown name

struct Objective {
  LossType loss = LossType::simple;
  VarianceType variance = VarianceType::fixed_large;  // sigma_t^2 in the weighted loss's term
  PredictionTarget predict = PredictionTarget::eps;
  bool learned_variance = false;                      // output [N, 2C, H, W]; L_hybrid
  double vlb_lambda = 0.001;                          // lambda of L_hybrid
  const TimestepSampler* timesteps = nullptr;         // importance-sampled t; null: uniform
  // Algorithm 1 exactly: L_simple on eps with uniform t.
  bool is_algorithm1() const;
};

struct ObjectiveStep {
  Var loss;                    // [1], on the tape
  std::vector<int64_t> t;      // the sampled timesteps [N]
  Tensor eps;                  // the sampled noise [N, C, H, W]
  Tensor x_t;                  // the model's input [N, C, H, W]
  Var prediction;              // the model's output: eps_theta, x_0 or v [N, C, H, W] ([N, 2C, H, W]
                               // with the learned variance)
  std::vector<double> weights;          // importance weights 1 / (T p_t) [N]; empty for uniform t
  std::vector<double> per_sample_loss;  // each sample's loss before its weight [N] (not for Algorithm 1)
  std::vector<double> vb_bpd;           // learned variance: each sample's VLB term, bits/dim [N]
};

// One training step of the objective: t and eps drawn as Algorithm 1 lines 3-4 do (t from the
// importance sampler when there is one), then objective_loss.
ObjectiveStep objective_step(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0, uint64_t seed,
                             uint64_t step, int64_t first_index, const Objective& objective);
// The objective's loss with t, eps and the importance weights (empty: none) given.
ObjectiveStep objective_loss(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0,
                             const std::vector<int64_t>& t, const Tensor& eps, const std::vector<double>& weights,
                             const Objective& objective);

}  // namespace ddpm

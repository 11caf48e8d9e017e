// algorithms.h: Algorithm 1 (training) and Algorithm 2 (sampling) of Ho et al. 2020, line by
// line, on the formulas of ddpm/diffusion/diffusion.h. Each body is tagged with the lines of
// the pseudo-code it implements, and neither has an option: the variants beyond the paper
// (other losses and targets, importance-sampled t, DDIM) are in ddpm/extensions/ and reuse
// the pieces below (uniform_timesteps, keyed_normal, training_loss, p_sample).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ddpm/core/rng.h"
#include "ddpm/core/tape.h"
#include "ddpm/core/tensor.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/schedule.h"

namespace ddpm {

// ---- Algorithm 1 -------------------------------------------------------------------
// The trainable predictor: (tape, x_t, t) -> eps_theta, recorded on the tape.
using TapeEpsFn = std::function<Var(Tape& tape, const Var& x_t, const std::vector<int64_t>& t)>;

struct TrainStep {
  Var loss;                // [1], on the tape
  std::vector<int64_t> t;  // the sampled timesteps [N]
  Tensor eps;              // the sampled noise [N, C, H, W]
  Tensor x_t;              // the model's input [N, C, H, W]
  Var eps_theta;           // the model's output [N, C, H, W]
};

// Algorithm 1 line 3: t_i ~ Uniform({1, ..., T}), t_i a pure function of (key, first_index + i).
std::vector<int64_t> uniform_timesteps(const Schedule& s, RngKey key, int64_t first_index, int64_t N);

// Algorithm 1, lines 2-5, for one batch x0 (line 2 is the caller's draw). t_i and eps_i are a
// pure function of (seed, step, first_index + i). The caller runs tape.backward(loss) and the
// optimizer step.
TrainStep training_step(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0, uint64_t seed,
                        uint64_t step, int64_t first_index = 0);
// Algorithm 1 line 5 alone, with t and eps given instead of drawn (training_step calls it after
// lines 3-4; the PyTorch cross-check feeds t and eps from a fixture).
TrainStep training_loss(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0,
                        const std::vector<int64_t>& t, const Tensor& eps);

// ---- Algorithm 2 -------------------------------------------------------------------
struct SampleOptions {
  bool clip_x0 = false;         // a departure from Algorithm 2 (diffusion.h's conventions)
  std::vector<int64_t> keep_t;  // return x_t at these t (0..T; T is x_T, 0 the result)
  int64_t first_index = 0;      // global index of the first sample (keys the noise)
  // If set, called after each reverse step with the t just done (T, T-1, ..., 1): x_{t-1}
  // is computed. For progress output; it cannot change the result.
  std::function<void(int64_t t)> progress = nullptr;
};
struct SampleResult {
  Tensor x0;                    // [N, C, H, W]
  std::vector<int64_t> kept_t;  // the t of each chain entry, descending
  std::vector<Tensor> chain;    // x_t for each kept t
  // Appends a copy of x_t to the chain when t is one of `keep_t` (SampleOptions::keep_t).
  void keep_if_asked(int64_t t, const Tensor& x, const std::vector<int64_t>& keep_t);
};
// Algorithm 2 for `shape` = [N, C, H, W]: the noise of sample i at step t is keyed by
// (seed, t, first_index + i), so any batch split gives the same images.
SampleResult sample(const Schedule& s, const ModelFn& model, const Shape& shape, uint64_t seed,
                    const SampleOptions& options = {});

}  // namespace ddpm

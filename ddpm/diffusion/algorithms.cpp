#include "ddpm/diffusion/algorithms.h"

#include <algorithm>

#include "ddpm/core/check.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Algorithm 1: training

std::vector<int64_t> uniform_timesteps(const Schedule& s, RngKey key, int64_t first_index, int64_t N) {
  std::vector<int64_t> t(N);
  // t ~ Uniform({1, ..., T}): floor(u T) + 1 for u in [0, 1), kept <= T against rounding
  for (int64_t i = 0; i < N; i++)
    t[i] = 1 + std::min<int64_t>(s.T - 1, static_cast<int64_t>(uniform_double(key, first_index + i) * s.T));
  return t;
}

TrainStep training_step(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0, uint64_t seed,
                        uint64_t step, int64_t first_index) {
  check_timesteps(s, x0, std::vector<int64_t>(x0.defined() && x0.dim() >= 1 ? x0.size(0) : 0, 1), "training_step");
  // Algorithm 1 line 2: x_0 ~ q(x_0)                         -- the caller's batch x0
  // Algorithm 1 line 3: t ~ Uniform({1, ..., T})
  const std::vector<int64_t> t =
      uniform_timesteps(s, RngKey{seed, make_stream(rng_train_t, step)}, first_index, x0.size(0));
  // Algorithm 1 line 4: eps ~ N(0, I)
  const Tensor eps = keyed_normal(x0.shape(), RngKey{seed, make_stream(rng_train_eps, step)}, first_index);
  // Algorithm 1 line 5: gradient step on || eps - eps_theta(sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, t) ||^2
  return training_loss(tape, s, model, x0, t, eps);
  // Algorithm 1 line 6 (until converged) is the caller's loop
}

TrainStep training_loss(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0,
                        const std::vector<int64_t>& t, const Tensor& eps) {
  check_timesteps(s, x0, t, "training_loss");
  TrainStep r;
  r.t = t;
  r.eps = eps;
  // Algorithm 1 line 5: x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, then
  // || eps - eps_theta(x_t, t) ||^2 (L_simple, Eq. 14); the caller takes the gradient step
  r.x_t = q_sample(s, x0, t, eps);
  r.eps_theta = model(tape, constant(r.x_t), t);
  DDPM_CHECK(r.eps_theta->value.shape() == r.x_t.shape(),
             "training_loss: the model's eps_theta " << r.eps_theta->value.shape_str() << " must have x_t's shape "
                                                     << r.x_t.shape_str());
  r.loss = loss_simple(tape, r.eps_theta, eps);
  return r;
}

// ---------------------------------------------------------------------------
// Algorithm 2: sampling

void SampleResult::keep_if_asked(int64_t t, const Tensor& x, const std::vector<int64_t>& keep_t) {
  if (std::find(keep_t.begin(), keep_t.end(), t) != keep_t.end()) {
    kept_t.push_back(t);
    chain.push_back(x.clone());
  }
}

SampleResult sample(const Schedule& s, const ModelFn& model, const Shape& shape, uint64_t seed,
                    const SampleOptions& options) {
  DDPM_CHECK(shape.size() >= 1 && shape[0] >= 1 && numel_of(shape) > 0,
             "sample: shape " << to_string(shape) << " must be [N, C, H, W] with N >= 1 and no zero sizes");
  for (int64_t k : options.keep_t)
    DDPM_CHECK(k >= 0 && k <= s.T, "sample: keep_t = " << k << " is outside 0..T = 0.." << s.T);
  const int64_t N = shape[0];
  SampleResult r;
  // Algorithm 2 line 1: x_T ~ N(0, I)
  Tensor x = keyed_normal(shape, RngKey{seed, make_stream(rng_sample_xT)}, options.first_index);
  r.keep_if_asked(s.T, x, options.keep_t);
  // Algorithm 2 line 2: for t = T, ..., 1 do
  for (int64_t t = s.T; t >= 1; t--) {
    const std::vector<int64_t> tv(N, t);
    // Algorithm 2 line 3: z ~ N(0, I) if t > 1, else z = 0
    const Tensor z = t > 1 ? keyed_normal(shape, RngKey{seed, make_stream(rng_sample_z, t)}, options.first_index)
                           : Tensor(shape);
    // Algorithm 2 line 4: x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t) / sqrt(1 - alpha-bar_t) eps_theta(x_t, t)) + sigma_t z
    x = p_sample(s, x, tv, model(x, tv), z, options.clip_x0);
    r.keep_if_asked(t - 1, x, options.keep_t);
    if (options.progress) options.progress(t);
  }  // Algorithm 2 line 5: end for
  // Algorithm 2 line 6: return x_0
  r.x0 = x;
  return r;
}

}  // namespace ddpm

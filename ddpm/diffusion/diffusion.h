// diffusion.h: the DDPM derivation (Ho et al. 2020), one function per
// formula: forward process, posterior, reverse step, losses, the variational bound, and
// Algorithms 1 and 2. docs/derivation.md maps every formula to its function and test.
//
// Glossary (ASCII name -> symbol). Schedule arrays are in ddpm/diffusion/schedule.h.
//   x0, x_t, x_prev     x_0, x_t, x_{t-1}                     tensors [N, C, H, W] (any rank >= 1;
//                                                             dim 0 is the batch N, D = numel / N)
//   t                   per-sample timesteps, std::vector<int64_t> of length N, each in 1..T
//   eps                 epsilon ~ N(0, I), the forward-process noise             [N, C, H, W]
//   eps_theta           epsilon_theta(x_t, t), the network's noise prediction  [N, C, H, W]
//   z                   z ~ N(0, I) of Algorithm 2                              [N, C, H, W]
//   pred_x0             x_0 estimated from (x_t, eps) (Ho et al. 2020, Eq. 15)
//   mu_tilde            mu-tilde_t(x_t, x_0), the posterior mean of q(x_{t-1} | x_t, x_0)
//   mu_theta            mu_theta(x_t, t), the reverse-process mean
//   Sigma               Sigma_theta(x_t, t), the reverse-process covariance (diagonal), as
//                       variance and log-variance tensors [N, C, H, W]
//   sigma2              sigma_t^2 when Sigma_theta = sigma_t^2 I, as the paper fixes it:
//                       beta_t ("fixed large") or beta-tilde_t ("fixed small")
//   A, B                mu-tilde = A x_t - B eps with A = 1/sqrt(alpha_t) = sqrt_recip_alpha and
//                       B = beta_t / (sqrt(alpha_t) sqrt(1 - alpha-bar_t)) = sqrt_recip_alpha * eps_coef
//   L_T, L_{t-1}, L_0   the terms of the variational bound (slide "Reverse (7/15)"; Ho et al. Eq. 5)
//   nats, bits/dim      -log p in nats per image; bits per dimension = nats / (D ln 2)
//
// Conventions (README "Conventions" compares them with other implementations):
//   - Data in [-1, 1]; timesteps 1-based as in the paper (the Python codebases are 0-based:
//     their t = k is our t = k + 1).
//   - sigma_t^2 = beta_t (fixed large) is the default, as in the original code's CIFAR-10 run.
//     At t = 1 both fixed variances take beta-tilde_2 (for fixed small, log beta-tilde_1 =
//     log 0 is clipped there), as the original code and improved-diffusion do; t = 1 adds no
//     noise (Algorithm 2 line 3), so this only changes the decoder L_0.
//   - Clipping the predicted x_0 to [-1, 1] while sampling is OFF by default. It is a
//     departure from Algorithm 2 (which the original code, improved-diffusion, lucidrains
//     and diffusers all make by default): with it on, the mean is the posterior mean
//     mu-tilde(x_t, clip(pred_x0)) instead of Algorithm 2 line 4's A x_t - B eps_theta.
//
// Randomness: every random number is a pure function of (seed, purpose, step, index) via
// ddpm/core/rng.h, so results do not depend on batch split or thread count. The index of
// element j of sample i is i * D + j, where i counts from `first_index`.
//
// Algorithms 1 and 2 are in ddpm/diffusion/algorithms.h, the two distributions of the bound
// in ddpm/diffusion/gaussian.h. Nothing here knows the options beyond the paper
// (ddpm/extensions/): they compose these functions.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/core/rng.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/core/tape.h"
#include "ddpm/core/tensor.h"

namespace ddpm {

// Purpose tags for make_stream: one per use of randomness.
enum RngPurpose : uint64_t {
  rng_train_t = 0x7d01,      // Algorithm 1 line 3, stream make_stream(rng_train_t, step), index i
  rng_train_eps = 0x7d02,    // Algorithm 1 line 4, stream make_stream(rng_train_eps, step), index i*D+j
  rng_sample_xT = 0x7d03,    // Algorithm 2 line 1, stream make_stream(rng_sample_xT), index i*D+j
  rng_sample_z = 0x7d04,     // Algorithm 2 line 3, stream make_stream(rng_sample_z, t), index i*D+j
  rng_vlb_eps = 0x7d05,      // vlb_terms: x_t ~ q(x_t|x_0), stream make_stream(rng_vlb_eps, t), index i*D+j
  rng_forward_eps = 0x7d06,  // forward_chain: stream make_stream(rng_forward_eps, t), index i*D+j
};

// A tensor of N(0, 1) draws: element j of sample i is draw number (first_index + i) * D + j of
// `key`'s stream, so any split of a batch draws the same numbers for the same images.
Tensor keyed_normal(const Shape& shape, RngKey key, int64_t first_index);

// out[i, j] = a[i] x[i, j] + b[i] y[i, j], with one coefficient per sample (length N): the
// shape of most formulas here, with a and b read off the schedule at each sample's t.
Tensor per_sample_axpby(const std::vector<float>& a, const Tensor& x, const std::vector<float>& b, const Tensor& y);

// Throws ddpm::Error naming `op` unless x has a batch dimension, t.size() == N and every
// t[i] is in 1..T.
void check_timesteps(const Schedule& s, const Tensor& x, const std::vector<int64_t>& t, const char* op);

// A diagonal Gaussian, elementwise: mean, variance and log-variance, each [N, C, H, W].
struct Gaussian {
  Tensor mean, variance, log_variance;
};

// ---- Forward process -------------------------------------------------------------
// q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I): x_t = sqrt(alpha_t) x_prev + sqrt(beta_t) eps.
Tensor q_step(const Schedule& s, const Tensor& x_prev, const std::vector<int64_t>& t, const Tensor& eps);
// q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I).
Gaussian q_mean_variance(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t);
// x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps.
Tensor q_sample(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps);
// x_0, x_1, ..., x_T by iterating q_step from x0 with noise keyed by (seed, t, index); entry k
// is x_k (entry 0 is x0 itself). For the forward-process figure and the tests.
std::vector<Tensor> forward_chain(const Schedule& s, const Tensor& x0, uint64_t seed, int64_t first_index = 0);
// The same chain, handing each x_t (t = 0, 1, ..., T in order) to `visit` instead of keeping
// it: for a figure that needs a few columns of a long chain.
void forward_chain(const Schedule& s, const Tensor& x0, uint64_t seed, int64_t first_index,
                   const std::function<void(int64_t t, const Tensor& x_t)>& visit);

// ---- Posterior q(x_{t-1} | x_t, x_0) and the reverse process ------------------------
// mean mu-tilde = coef1 x_0 + coef2 x_t, variance beta-tilde_t, log-variance clipped at t = 1.
Gaussian q_posterior(const Schedule& s, const Tensor& x0, const Tensor& x_t, const std::vector<int64_t>& t);
// x_0 = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t).
Tensor predict_x0_from_eps(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& eps);
// mu = A x_t - B eps = (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alpha-bar_t) eps). With eps the
// true noise this is mu-tilde (slide 12); with eps_theta it is mu_theta (slide 13).
Tensor posterior_mean_from_eps(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                               const Tensor& eps);

// The paper's two choices of Sigma_theta = sigma_t^2 I (Ho et al. 2020, Sec. 3.2).
enum class VarianceType {
  fixed_large,  // sigma_t^2 = beta_t
  fixed_small   // sigma_t^2 = beta-tilde_t
};
const char* variance_name(VarianceType v);          // "fixed_large", "fixed_small"
VarianceType parse_variance(const std::string& s);  // throws on an unknown name

// sigma_t^2 and log sigma_t^2 in double, with the t = 1 convention above.
double reverse_variance(const Schedule& s, int64_t t, VarianceType v);
double reverse_log_variance(const Schedule& s, int64_t t, VarianceType v);

// Sigma_theta(x_t, t) of p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), Sigma_theta(x_t, t))
// (slide "Reverse (1/15)"; Ho et al. Eq. 1), diagonal. The log-variance is kept beside the
// variance: the bound uses it, and at t = 1 it is clipped.
struct Sigma {
  Tensor variance;      // [N, C, H, W]
  Tensor log_variance;  // [N, C, H, W]
};
// Sigma_theta = sigma_t^2 I for each sample's t, shaped like x_t.
Sigma fixed_sigma(const Schedule& s, VarianceType v, const Tensor& x_t, const std::vector<int64_t>& t);

// What p_theta(x_{t-1} | x_t) takes from the network at (x_t, t): eps_theta, which gives
// mu_theta (Eq. 11), and Sigma_theta.
struct ModelPrediction {
  Tensor eps_theta;  // [N, C, H, W]
  Sigma sigma;
};
// eps_theta(x_t, t) alone: x_t [N, C, H, W] and t (length N) -> eps_theta [N, C, H, W], no
// gradient. An oracle in the tests, the U-Net in the tools.
using EpsFn = std::function<Tensor(const Tensor& x_t, const std::vector<int64_t>& t)>;
// The whole reverse-process model: (x_t, t) -> eps_theta and Sigma_theta.
using ModelFn = std::function<ModelPrediction(const Tensor& x_t, const std::vector<int64_t>& t)>;
// The paper's model: eps_theta with the fixed Sigma_theta = sigma_t^2 I. The schedule must
// outlive it.
ModelFn fixed_variance_model(const Schedule& s, EpsFn eps_theta, VarianceType v);

// p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), Sigma_theta(x_t, t)), plus the pred_x0 it implies.
struct PMeanVariance {
  Tensor mean, variance, log_variance, pred_x0;  // each [N, C, H, W]
};
PMeanVariance p_mean_variance(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                              const ModelPrediction& model, bool clip_x0 = false);
// Algorithm 2 line 4: x_{t-1} = mu_theta(x_t, t) + sigma_t z, with z forced to 0 where t = 1.
Tensor p_sample(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const ModelPrediction& model,
                const Tensor& z, bool clip_x0 = false);

// ---- Losses -----------------------------------------------------------------------
// The scaling term of L_{t-1}: beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha-bar_t)) (Ho et al. Eq. 12).
double loss_weight(const Schedule& s, int64_t t, VarianceType v);
// L_simple = mean over batch and elements of (eps - eps_theta)^2 (Algorithm 1 line 5; Eq. 14).
// A tape op through mse_loss; out is [1].
Var loss_simple(Tape& tape, const Var& eps_theta, const Tensor& eps);
// The weighted L_{t-1} = (1/N) sum_i w_i ||eps_i - eps_theta_i||^2 (sum over the D elements of
// sample i), nats per image, with per-sample weights w_i (use loss_weight). A tape op; out is [1].
Var weighted_sse(Tape& tape, const Var& eps_theta, const Tensor& eps, const std::vector<double>& w);
// weighted_sse with w_i = loss_weight(s, t_i, variance).
Var loss_weighted(Tape& tape, const Schedule& s, const Var& eps_theta, const Tensor& eps,
                  const std::vector<int64_t>& t, VarianceType variance);

// ---- The variational bound --------------------------------------------------------
struct VlbOptions {
  bool clip_x0 = false;       // the reverse process's mean (see the conventions above)
  int64_t stride = 1;         // 1: every L_{t-1}, t = 2..T. k > 1: an estimate, named as such: the
                              // first k terms, then the midpoint term of each block of k, counted k times
  int64_t first_index = 0;    // global index of x0's first sample (keys the noise)
};
// -log p_theta(x_0) <= L_T + sum_{t=2..T} L_{t-1} + L_0 per image (slides "Reverse (4/15)" to
// "(7/15)"; Ho et al. Eq. 5), one draw of x_t ~ q(x_t | x_0) per term, keyed by (seed, t, i).
struct VlbResult {
  std::string name;                          // "L_vlb (all T terms)" or "L_vlb estimate (stride k: ...)"
  int64_t T = 0, stride = 1, D = 0;          // D = elements per image
  std::vector<double> prior_nats;            // L_T per image [N]
  std::vector<int64_t> kl_t;                 // the t of each evaluated L_{t-1}, descending
  std::vector<int64_t> kl_count;             // how many of the T-1 terms each stands for (1 unless strided)
  std::vector<std::vector<double>> kl_nats;  // L_{t-1} per image, [K][N], same order as kl_t
  std::vector<double> kl_sum_nats;           // sum over t = 2..T of L_{t-1} (estimated when stride > 1) [N]
  std::vector<double> decoder_nats;          // L_0 = -log p_theta(x_0 | x_1) per image [N]
  std::vector<double> total_nats;            // L_T + sum L_{t-1} + L_0 per image [N]
  std::vector<double> total_bpd;             // total_nats / (D ln 2) per image [N]
  double mean_nats = 0, mean_bpd = 0;        // averages over the batch
};
VlbResult vlb_terms(const Schedule& s, const ModelFn& model, const Tensor& x0, uint64_t seed,
                    const VlbOptions& options = {});

}  // namespace ddpm

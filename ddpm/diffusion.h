// diffusion.h: the DDPM derivation (Ho et al. 2020), one function per
// formula: forward process, posterior, reverse step, losses, the variational bound, and
// Algorithms 1 and 2. docs/derivation.md maps every formula to its function and test.
//
// Glossary (ASCII name -> symbol). Schedule arrays are in ddpm/schedule.h.
//   x0, x_t, x_prev     x_0, x_t, x_{t-1}                     tensors [N, C, H, W] (any rank >= 1;
//                                                             dim 0 is the batch N, D = numel / N)
//   t                   per-sample timesteps, std::vector<int64_t> of length N, each in 1..T
//   eps                 epsilon ~ N(0, I), the forward-process noise             [N, C, H, W]
//   eps_theta           epsilon_theta(x_t, t), the network's noise prediction  [N, C, H, W]
//   z                   z ~ N(0, I) of Algorithm 2                              [N, C, H, W]
//   pred_x0             x_0 estimated from (x_t, eps) (Ho et al. 2020, Eq. 15)
//   mu_tilde            mu-tilde_t(x_t, x_0), the posterior mean of q(x_{t-1} | x_t, x_0)
//   mu_theta            mu_theta(x_t, t), the reverse-process mean
//   sigma2              sigma_t^2, the reverse-process variance: beta_t ("fixed large") or
//                       beta-tilde_t ("fixed small")
//   A, B                mu-tilde = A x_t - B eps with A = 1/sqrt(alpha_t) = sqrt_recip_alpha and
//                       B = beta_t / (sqrt(alpha_t) sqrt(1 - alpha-bar_t)) = sqrt_recip_alpha * eps_coef
//   L_T, L_{t-1}, L_0   the terms of the variational bound (slide "Reverse (7/15)"; Ho et al. Eq. 5)
//   nats, bits/dim      -log p in nats per image; bits per dimension = nats / (D ln 2)
//
// Conventions (docs/derivation.md compares them with other implementations):
//   - Data in [-1, 1]; timesteps 1-based as in the paper (the Python codebases are 0-based:
//     their t = k is our t = k + 1).
//   - sigma_t^2 = beta_t (fixed large) is the default, as in the original code's CIFAR-10 run;
//     we use beta_t at every t, also t = 1 (the original code and improved-diffusion take
//     beta-tilde_2 at t = 1; it only matters for L_0). Fixed small uses beta-tilde_t, with
//     log beta-tilde_1 clipped to log beta-tilde_2 (beta-tilde_1 = 0).
//   - Clipping the predicted x_0 to [-1, 1] while sampling is OFF by default. It is a
//     departure from Algorithm 2 (which the original code, improved-diffusion, lucidrains
//     and diffusers all make by default): with it on, the mean is the posterior mean
//     mu-tilde(x_t, clip(pred_x0)) instead of Algorithm 2 line 4's A x_t - B eps_theta.
//
// Randomness: every random number is a pure function of (seed, purpose, step, index) via
// ddpm/rng.h, so results do not depend on batch split or thread count. The index of
// element j of sample i is i * D + j, where i counts from `first_index`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/rng.h"
#include "ddpm/schedule.h"
#include "ddpm/tape.h"
#include "ddpm/tensor.h"

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

enum class VarianceType {
  fixed_large,   // sigma_t^2 = beta_t
  fixed_small,   // sigma_t^2 = beta-tilde_t
  learned_range  // log sigma_t^2 = v log beta_t + (1 - v) log beta-tilde_t, v from the model
                 // (Nichol & Dhariwal 2021); v in [0, 1], same shape as x_t
};
const char* variance_name(VarianceType v);          // "fixed_large", ...
VarianceType parse_variance(const std::string& s);  // throws on an unknown name

struct ReverseOptions {
  VarianceType variance = VarianceType::fixed_large;
  bool clip_x0 = false;  // departure from Algorithm 2 when true; see the conventions above
};

// What the network gives at (x_t, t): eps_theta, and for learned_range the interpolation v.
// Implicit from a Tensor, so a callback returning eps_theta alone converts to EpsFn.
struct ModelOutput {
  Tensor eps;  // eps_theta(x_t, t)      [N, C, H, W]
  Tensor v;    // undefined unless learned_range   [N, C, H, W]
  ModelOutput(Tensor eps_theta, Tensor v_ = Tensor()) : eps(std::move(eps_theta)), v(std::move(v_)) {}
};
// The no-grad predictor: x_t [N, C, H, W] and t (length N) -> ModelOutput. An oracle in the
// tests; the U-Net later.
using EpsFn = std::function<ModelOutput(const Tensor& x_t, const std::vector<int64_t>& t)>;

// p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I), plus the pred_x0 it implies.
struct PMeanVariance {
  Tensor mean, variance, log_variance, pred_x0;  // each [N, C, H, W]
};
PMeanVariance p_mean_variance(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                              const ModelOutput& model, const ReverseOptions& options = {});
// Algorithm 2 line 4: x_{t-1} = mu_theta(x_t, t) + sigma_t z, with z forced to 0 where t = 1.
Tensor p_sample(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const ModelOutput& model,
                const Tensor& z, const ReverseOptions& options = {});

// ---- Losses -----------------------------------------------------------------------
// sigma_t^2 for the weighted loss and the KL terms, with the t = 1 conventions above (double).
double reverse_variance(const Schedule& s, int64_t t, VarianceType v);
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
// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats.
double normal_kl(double mean1, double logvar1, double mean2, double logvar2);
Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2);
// log Phi(z), Phi the standard normal CDF, in double for every z (the decoder's edge bins).
double log_normal_cdf(double z);
// log of the probability that N(mean, exp(log_scale)^2) puts on the 8-bit bin of x (x on the
// grid -1 + 2k/255, k = 0..255): the bin is [x - 1/255, x + 1/255], with the edge bins open to
// -inf (x = -1) and +inf (x = 1) (Ho et al. 2020, Sec. 3.3, Eq. 13). In double.
double discretized_gaussian_log_prob(double x, double mean, double log_scale);
Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales);

struct VlbOptions {
  ReverseOptions reverse;     // the reverse process p_theta whose bound is computed
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
VlbResult vlb_terms(const Schedule& s, const EpsFn& model, const Tensor& x0, uint64_t seed,
                    const VlbOptions& options = {});

// ---- Algorithms 1 and 2 -----------------------------------------------------------
// The trainable predictor: (tape, x_t, t) -> eps_theta, recorded on the tape.
using TapeEpsFn = std::function<Var(Tape& tape, const Var& x_t, const std::vector<int64_t>& t)>;

enum class LossType { simple, weighted };
// What the network predicts (targets.h has the conversions): eps is Algorithm 1's.
enum class PredictionTarget { eps, x0, v };
class TimestepSampler;  // timestep_sampler.h
struct TrainOptions {
  LossType loss = LossType::simple;
  VarianceType variance = VarianceType::fixed_large;  // sigma_t^2 in the weighted loss
  int64_t first_index = 0;                            // global index of x0's first sample
  // Beyond Algorithm 1, each off by default (README "Beyond Algorithm 2"). With all three at
  // their defaults training_step is Algorithm 1 exactly (tests/test_default_path.cpp).
  PredictionTarget predict = PredictionTarget::eps;   // the regression target (targets.h)
  bool learned_variance = false;                      // output [N, 2C, H, W]; L_hybrid (learned_variance.h)
  double vlb_lambda = 0.001;                          // lambda of L_hybrid
  const TimestepSampler* timesteps = nullptr;         // importance-sampled t (timestep_sampler.h)
};
struct TrainStep {
  Var loss;                   // [1], on the tape
  std::vector<int64_t> t;     // the sampled timesteps [N]
  Tensor eps;                 // the sampled noise [N, C, H, W]
  Tensor x_t;                 // the model's input [N, C, H, W]
  Var eps_theta;              // the model's output (eps_theta by default; see TrainOptions.predict)
  // Filled only when an option above is on:
  std::vector<double> weights;          // importance weights 1 / (T p_t) [N]
  std::vector<double> per_sample_loss;  // each sample's loss before its weight [N]
  std::vector<double> vb_bpd;           // learned_variance: each sample's VLB term, bits/dim [N]
};
// Algorithm 1, lines 2-5, for one batch x0 (line 2 is the caller's draw). t_i and eps_i are a
// pure function of (seed, step, first_index + i). The caller runs tape.backward(loss) and the
// optimizer step.
TrainStep training_step(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0, uint64_t seed,
                        uint64_t step, const TrainOptions& options = {});
// Algorithm 1 line 5 alone, with t and eps given instead of drawn (training_step calls it after
// lines 3-4; the PyTorch cross-check feeds t and eps from a fixture). options.first_index is unused.
TrainStep training_loss_given(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0,
                              const std::vector<int64_t>& t, const Tensor& eps, const TrainOptions& options = {},
                              const std::vector<double>& weights = {});

struct SampleOptions {
  ReverseOptions reverse;
  std::vector<int64_t> keep_t;  // return x_t at these t (0..T; T is x_T, 0 the result)
  int64_t first_index = 0;      // global index of the first sample (keys the noise)
  // If set, called after each reverse step with the t just done (T, T-1, ..., 1): x_{t-1}
  // is computed. For progress output; it cannot change the result.
  std::function<void(int64_t t)> progress = nullptr;
};
struct SampleResult {
  Tensor x0;                   // [N, C, H, W]
  std::vector<int64_t> kept_t;  // the t of each chain entry, descending
  std::vector<Tensor> chain;    // x_t for each kept t
};
// Algorithm 2 for `shape` = [N, C, H, W]: the noise of sample i at step t is keyed by
// (seed, t, first_index + i), so any batch split gives the same images.
SampleResult sample(const Schedule& s, const EpsFn& model, const Shape& shape, uint64_t seed,
                    const SampleOptions& options = {});

}  // namespace ddpm

// schedule.h: the variance schedule beta_1..beta_T and every quantity derived from it.
//
// Glossary (ASCII name -> symbol in docs/derivation.md and Ho et al. 2020):
//   T                               number of diffusion steps; t runs 1..T as in the paper
//   beta[t]                         beta_t, the forward-process variance of step t
//   alpha[t]                        alpha_t = 1 - beta_t
//   alpha_bar[t]                    alpha-bar_t = prod_{s=1..t} alpha_s
//   alpha_bar_prev[t]               alpha-bar_{t-1}
//   sqrt_alpha_bar[t]               sqrt(alpha-bar_t)
//   sqrt_one_minus_alpha_bar[t]     sqrt(1 - alpha-bar_t)
//   sqrt_recip_alpha[t]             1 / sqrt(alpha_t)             (= A of slides 10-12)
//   eps_coef[t]                     beta_t / sqrt(1 - alpha-bar_t)   (so B = sqrt_recip_alpha * eps_coef)
//   posterior_variance[t]           beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) * beta_t
//   posterior_log_variance_clipped  log beta-tilde_t, with t = 1 (where beta-tilde_1 = 0) using
//                                   beta-tilde_2 (as the original code and improved-diffusion do)
//   posterior_mean_coef1[t]         sqrt(alpha-bar_{t-1}) beta_t / (1 - alpha-bar_t)     (multiplies x_0)
//   posterior_mean_coef2[t]         sqrt(alpha_t) (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) (multiplies x_t)
//
// Indexing: every array has length T+1 and is indexed by t = 1..T; index 0 holds the
// t = 0 values beta[0] = 0, alpha[0] = 1, alpha_bar[0] = 1 (so alpha_bar[t-1] needs no
// special case at t = 1); the other index-0 entries are 0 except sqrt_alpha_bar[0] = 1,
// alpha_bar_prev[0] = 1 and sqrt_recip_alpha[0] = 1, and are never used by the math.
// Everything is computed in double; `f` holds float copies for the hot path.
//
// Schedules (slide "Different Variance Schedulers"; Ho et al. 2020 Sec. 4; Nichol & Dhariwal 2021):
//   linear     beta_t = linspace(beta_start, beta_end, T); default 1e-4 .. 0.02 as in Ho et al.
//              (slide "Forward (Diffusion) Process (1/2)"). NOT rescaled by 1000/T: that is the
//              original code's and diffusers' convention; improved-diffusion and lucidrains
//              rescale. Pass other beta_start/beta_end to rescale by hand.
//   cosine     alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), s = 0.008;
//              beta_t = min(1 - alpha_bar(t) / alpha_bar(t-1), 0.999) (Nichol & Dhariwal 2021, Sec. 3.2);
//              alpha_bar is then recomputed as the product of the clipped 1 - beta.
//   sigmoid    defined on beta: beta_t = sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start
//              (diffusers' "sigmoid"). lucidrains' denoising-diffusion-pytorch has a different
//              "sigmoid" schedule defined on alpha_bar (its default); it is not this one.
//   quadratic  beta_t = linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (the original code's "quad",
//              diffusers' "scaled_linear").
//   linspace(a, b, T) is numpy's: a + (b - a) (t - 1) / (T - 1) for t = 1..T, and just a when T = 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

struct ScheduleOptions {
  double beta_start = 1e-4;  // beta_1 for linear, quadratic and sigmoid
  double beta_end = 0.02;    // beta_T for linear and quadratic; the top of sigmoid's range
  double cosine_s = 0.008;   // the cosine schedule's offset s
  double max_beta = 0.999;   // the cosine schedule's clip
};

struct Schedule {
  std::string name;
  int64_t T = 0;

  // Length T+1, index t = 1..T (see the indexing note above), double precision.
  std::vector<double> beta, alpha, alpha_bar, alpha_bar_prev, sqrt_alpha_bar, sqrt_one_minus_alpha_bar,
      sqrt_recip_alpha, eps_coef, posterior_variance, posterior_log_variance_clipped, posterior_mean_coef1,
      posterior_mean_coef2;

  // Float copies of the same arrays, for the elementwise loops.
  struct Floats {
    std::vector<float> beta, alpha, alpha_bar, alpha_bar_prev, sqrt_alpha_bar, sqrt_one_minus_alpha_bar,
        sqrt_recip_alpha, eps_coef, posterior_variance, posterior_log_variance_clipped, posterior_mean_coef1,
        posterior_mean_coef2;
  } f;

  // Throws ddpm::Error naming `op` unless 1 <= t <= T.
  void check_t(int64_t t, const char* op) const;
};

// The bound on T that every tool applies, from here: the training config's --T (train.h),
// make_schedule, ./schedule --T, ./sample --forward --T and ./sample's checkpoints (through
// TrainConfig::from_metadata). Far beyond any sensible run (Ho et al. use 1000), it keeps
// the schedule's arrays (24 of T+1 entries, 15 MB at the bound) and a sampling chain of T
// steps within reach.
constexpr int64_t kMaxT = 100000;

// Throws ddpm::Error "<what> <T> not in [1, 100000]" unless 1 <= T <= kMaxT; `what` names
// the flag or the caller (e.g. "--T").
void check_T(int64_t T, const std::string& what);

// The names make_schedule accepts: linear, cosine, sigmoid, quadratic.
const std::vector<std::string>& schedule_names();

// beta_1..beta_T (length T, index t-1) of a named schedule. Throws ddpm::Error for an
// unknown name (listing the known ones) or T outside 1..kMaxT, before allocating.
std::vector<double> schedule_betas(const std::string& name, int64_t T, const ScheduleOptions& options = {});

// A named schedule with all derived quantities.
Schedule make_schedule(const std::string& name, int64_t T, const ScheduleOptions& options = {});

// The derived quantities for any betas (beta_1..beta_T, each in (0, 1)).
Schedule schedule_from_betas(const std::string& name, const std::vector<double>& betas);

}  // namespace ddpm

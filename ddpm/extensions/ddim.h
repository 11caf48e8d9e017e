// ddim.h: DDIM sampling (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models") on
// a respaced subsequence of timesteps, its stochastic family (eta > 0), and the
// deterministic encoder x_0 -> x_T with its decoder x_T -> x_0. An option: Algorithm 2
// (diffusion.h's `sample`) stays the default sampler.
//
// Glossary (beyond diffusion.h's):
//   tau                 the respaced timesteps tau_1 < ... < tau_S, a subsequence of 1..T
//   t, s                one DDIM step goes from x_t to x_s, s = the previous entry of tau
//                       (s = 0 after tau_1, with alpha-bar_0 = 1)
//   eta                 the stochasticity: 0 is the deterministic DDIM, 1 is DDPM's variance
//   sigma_ts            sigma_t(eta) = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)
//                       (Song et al. Eq. 16; ab = alpha-bar)
//
// One step (Song et al. Eq. 12), with eps = eps_theta(x_t, t):
//   pred_x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)
//   x_s     = sqrt(ab_s) pred_x0 + sqrt(1 - ab_s - sigma_ts^2) eps + sigma_ts z
// With eta = 1 and s = t - 1, sigma_ts^2 = (1 - ab_{t-1}) / (1 - ab_t) beta_t = beta-tilde_t and
// the mean is the posterior mean mu-tilde(x_t, pred_x0): DDPM with sigma_t^2 = beta-tilde_t
// ("fixed_small"), not the default fixed_large (tests/extensions/test_ddim.cpp checks both facts).
//
// Spacing of the S respaced steps among 1..T (t is 1-based; the Python codebases' 0-based
// k is our k + 1):
//   linspace   tau_k = 1 + round((k - 1) (T - 1) / (S - 1)), k = 1..S: both ends, t = 1 and
//              t = T (diffusers' "linspace": numpy.linspace(0, T - 1, S).round() + 1; S = 1 gives
//              {T}, where numpy would give {1})
//   trailing   tau_{S-j} = round(T - j T / S), j = 0..S-1: ends at t = T, starts at about T / S
//              (diffusers' "trailing": numpy.round(numpy.arange(T, 0, -T / S)) - 1 + 1;
//              Lin et al. 2024, Table 2: starting at t = T matters when alpha-bar_T is not ~0)
// round() is numpy's, half to even (std::nearbyint), so the sequences equal diffusers'. Both contain T, so sampling starts from x_T ~ N(0, I)
// drawn exactly as Algorithm 2 line 1 draws it (same seed, same x_T). S = T gives 1..T.
//
// Encoding (Song et al. Sec. 4.3, the ODE run forward): a step from x_s to x_t (s < t,
// s = 0 is the data) is x_t = sqrt(ab_t) pred_x0 + sqrt(1 - ab_t) eps with
// eps = eps_theta(x_s, t) and pred_x0 = (x_s - sqrt(1 - ab_s) eps) / sqrt(ab_s): the model
// is evaluated at the state we have and the time we go to (t = 0 is outside the model's
// domain). The round trip's error is the Euler discretization's, O(1 / S).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"

namespace ddpm {

enum RngDdimPurpose : uint64_t {
  rng_ddim_z = 0x7d10,  // DDIM step from t: stream make_stream(rng_ddim_z, t), index i*D+j
};

enum class Spacing { linspace, trailing };
const char* spacing_name(Spacing s);          // "linspace", "trailing"
Spacing parse_spacing(const std::string& s);  // throws on an unknown name

// tau_1 < ... < tau_S (ascending), each in 1..T, tau_S = T. Throws unless 1 <= S <= T.
std::vector<int64_t> respace_timesteps(int64_t T, int64_t S, Spacing spacing);

// sigma_ts^2 for a step from t to s (0 <= s < t <= T), in double (Song et al. Eq. 16).
double ddim_sigma2(const Schedule& sch, int64_t t, int64_t s, double eta);

// One DDIM step from x_t (every sample at timestep t) to timestep s < t, given eps_theta(x_t, t)
// and z ~ N(0, I) (ignored when eta = 0; may be undefined then). clip_x0 clips pred_x0 to
// [-1, 1] (off by default, as in diffusion.h); the direction term keeps the model's eps, as
// diffusers' DDIMScheduler does (improved-diffusion re-derives eps from the clipped x_0).
Tensor ddim_step(const Schedule& sch, const Tensor& x_t, int64_t t, int64_t s, const Tensor& eps, double eta,
                 const Tensor& z, bool clip_x0 = false);

struct DdimOptions {
  int64_t steps = 50;                  // S, the length of the respaced sequence
  Spacing spacing = Spacing::trailing;
  double eta = 0.0;                    // 0: deterministic DDIM; 1: DDPM's beta-tilde variance
  bool clip_x0 = false;
  std::vector<int64_t> keep_t;         // return x_t at these t (T, entries of tau, or 0)
  int64_t first_index = 0;             // global index of the first sample (keys the noise)
};

// DDIM sampling for `shape` = [N, C, H, W]: x_T as in Algorithm 2 line 1 (same seed, same
// x_T), then one ddim_step per entry of tau, descending. Noise of sample i at step t is
// keyed by (seed, t, first_index + i): any batch split gives the same images.
SampleResult ddim_sample(const Schedule& sch, const EpsFn& model, const Shape& shape, uint64_t seed,
                         const DdimOptions& options = {});

// The deterministic DDIM encoder x_0 -> x_T along tau (ascending) and its decoder x_T -> x_0
// (eta = 0 sampling started from a given x_T). Both use S = tau.size() model evaluations.
Tensor ddim_encode(const Schedule& sch, const EpsFn& model, const Tensor& x0, const std::vector<int64_t>& tau);
Tensor ddim_decode(const Schedule& sch, const EpsFn& model, const Tensor& x_T, const std::vector<int64_t>& tau);

}  // namespace ddpm

// learned_variance.h: the hybrid loss of Improved DDPM (Nichol & Dhariwal 2021, Sec. 3.1):
// the network outputs eps_theta and a variance channel r, and trains on
//   L_hybrid = L_simple + lambda L_vlb,   lambda = 0.001,
// with the gradient of L_vlb reaching only r (stop-gradient on the mean).
//
// Convention (improved-diffusion's, gaussian_diffusion.py, ModelVarType.LEARNED_RANGE): the
// raw output r is unconstrained (about [-1, 1]); the interpolation is frac = (r + 1) / 2 and
//   log Sigma = frac log beta_t + (1 - frac) log beta-tilde_t      (beta-tilde_1 clipped to beta-tilde_2)
// diffusion.h's learned_range takes frac itself (ModelOutput.v = frac); unet_eps_fn maps
// r -> (r + 1) / 2. A zero-initialized output layer starts at frac = 1/2.
//
// The VLB term of sample i, at its t_i (one term of the bound, as improved-diffusion's
// `_vb_terms_bpd`), per element j and in nats:
//   t > 1:  L_ij = KL(N(mu-tilde, beta-tilde_t) || N(mu_theta, Sigma))        (Ho et al. Eq. 5)
//   t = 1:  L_ij = -log p(x_0 | x_1), the discretized Gaussian decoder         (Ho et al. Eq. 13)
// mu_theta comes from eps_theta (Eq. 11) with the gradient stopped; vb_i = mean_j L_ij / ln 2
// (bits/dim). As a per-term estimate of L_vlb = sum_t L_t, uniform t gives L_vlb ~ T vb, so
//   loss = (1/N) sum_i w_i [ mean_j (target - out)^2 + lambda T vb_i ]
// which is improved-diffusion's RESCALED_MSE (vb * T / 1000) for lambda = 0.001. The weights
// w_i are 1 (uniform t) or 1 / (T p_{t_i}) (importance-sampled t, timestep_sampler.h).
//
// Derivatives of L_ij with respect to lp = log Sigma_ij (the only input with a gradient):
//   KL:       dL/dlp = 1/2 (1 - exp(lq - lp) - (mu_q - mu_p)^2 exp(-lp))
//   decoder:  with ls = lp / 2 and z_pm = (x_0 - mu_p +- 1/255) exp(-ls), dz/dls = -z:
//             interior  d log P/dls = (z_- phi(z_-) - z_+ phi(z_+)) / P,  P = Phi(z_+) - Phi(z_-)
//             x_0 = -1  d log Phi(z_+)/dls = -z_+ phi(z_+) / Phi(z_+)
//             x_0 = +1  d log Phi(-z_-)/dls = z_- phi(z_-) / Phi(-z_-)
//             each phi(z) / P as exp(log phi(z) - log P), so the far tails, where P underflows, hold
//             dL/dlp = -1/2 d log P/dls
//   dlp/dr = (log beta_t - log beta-tilde_t) / 2.
#pragma once

#include <vector>

#include "ddpm/diffusion.h"
#include "ddpm/targets.h"

namespace ddpm {

// One element of the VLB term: its value in nats, and dL/dlp into *dlogvar_p.
// decoder: the t = 1 term (x0 on the 8-bit grid in [-1, 1]); else the KL term.
double vlb_element_forward_backward(double x0, double mean_q, double logvar_q, double mean_p, double logvar_p,
                                    bool decoder, double* dlogvar_p);

struct HybridLossOptions {
  double lambda = 0.001;               // Nichol & Dhariwal 2021, Sec. 3.1
  PredictionTarget predict = PredictionTarget::eps;  // what channels [0, C) predict
  std::vector<double> weights;         // per-sample w_i; empty means all 1
};

struct HybridLoss {
  Var loss;                          // [1], on the tape
  std::vector<double> per_sample;    // mean_j (target - out)^2 + lambda T vb_i, before w_i [N]
  std::vector<double> vb_bpd;        // vb_i, bits/dim [N]
};

// out [N, 2C, H, W]: channels [0, C) predict `predict`, [C, 2C) are r. target is that
// prediction's regression target [N, C, H, W] (targets.h training_target); x0, x_t [N, C, H, W].
HybridLoss hybrid_loss(Tape& tape, const Schedule& s, const Var& out, const Tensor& target, const Tensor& x0,
                       const Tensor& x_t, const std::vector<int64_t>& t, const HybridLossOptions& options = {});

}  // namespace ddpm

// learned_variance.h: the hybrid loss of Improved DDPM (Nichol & Dhariwal 2021, Sec. 3.1):
// the network outputs eps_theta and a variance channel r, and trains on
//   L_hybrid = L_simple + lambda L_vlb,   lambda = 0.001,
// with the gradient of L_vlb reaching only r (stop-gradient on the mean).
//
// Convention (improved-diffusion's, gaussian_diffusion.py, ModelVarType.LEARNED_RANGE): the
// network's extra channels r are unconstrained (about [-1, 1]); the interpolation fraction
// is frac = (r + 1) / 2 and
//   log Sigma = frac log beta_t + (1 - frac) log beta-tilde_t      (beta-tilde_1 clipped to beta-tilde_2)
// so Sigma_theta(x_t, t) of the paper's general form (Ho et al. Eq. 1) is learned per element.
// A zero-initialized output layer starts at frac = 1/2. (Nichol & Dhariwal call frac "v";
// here v is only the velocity of prediction_targets.h.)
//
// The VLB term of sample i, at its t_i (one term of the bound, as improved-diffusion's
// `_vb_terms_bpd`), per element j and in nats:
//   t > 1:  L_ij = KL(N(mu-tilde, beta-tilde_t) || N(mu_theta, Sigma))        (Ho et al. Eq. 5)
//   t = 1:  L_ij = -log p(x_0 | x_1), the discretized Gaussian decoder         (Ho et al. Eq. 13)
// mu_theta comes from eps_theta (Eq. 11) with the gradient stopped; vb_i = mean_j L_ij / ln 2
// (bits/dim). As a per-term estimate of L_vlb = sum_t L_t, uniform t gives L_vlb ~ T vb, so
//   loss = (1/N) sum_i w_i [ mean_j (target - out)^2 + lambda T vb_i ]
// which is improved-diffusion's RESCALED_MSE (vb * T / 1000) for lambda = 0.001. The weights
// w_i are 1 (uniform t) or 1 / (T p_{t_i}) (importance-sampled t, importance_sampling.h).
//
// Derivatives of L_ij with respect to lp = log Sigma_ij (the only input with a gradient):
//   KL:       dL/dlp = d KL / d logvar2 (ddpm/diffusion/gaussian.h's normal_kl gives it)
//   decoder:  log_scale ls = lp / 2, so dL/dlp = -1/2 d log P / d ls (discretized_gaussian_log_prob)
//   dlp/dr = (log beta_t - log beta-tilde_t) / 2.
#pragma once

#include <vector>

#include "ddpm/core/tape.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/extensions/prediction_targets.h"

namespace ddpm {

// A learned-variance network's output [N, 2C, H, W]: channels [0, C) predict the target,
// channels [C, 2C) are r. Each part is [N, C, H, W].
struct LearnedOutput {
  Tensor prediction, r;
};
LearnedOutput split_learned_output(const Tensor& out);

// log Sigma at t for the raw channel value r: frac log beta_t + (1 - frac) log beta-tilde_t,
// frac = (r + 1) / 2, in double.
double learned_log_variance(const Schedule& s, int64_t t, double r);
// Sigma_theta(x_t, t) from r [N, C, H, W], one t per sample.
Sigma learned_sigma(const Schedule& s, const Tensor& r, const std::vector<int64_t>& t);
// A learned-variance network (output [N, 2C, H, W], no gradient) as the reverse process's
// model: eps_theta from its prediction of `target` (prediction_targets.h), Sigma_theta from r.
// The schedule must outlive it.
ModelFn learned_variance_model(const Schedule& s, EpsFn network, PredictionTarget target);

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
// prediction's regression target [N, C, H, W] (prediction_targets.h training_target); x0, x_t [N, C, H, W].
HybridLoss hybrid_loss(Tape& tape, const Schedule& s, const Var& out, const Tensor& target, const Tensor& x0,
                       const Tensor& x_t, const std::vector<int64_t>& t, const HybridLossOptions& options = {});

}  // namespace ddpm

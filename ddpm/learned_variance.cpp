#include "ddpm/learned_variance.h"

#include <cmath>

#include "ddpm/check.h"

namespace ddpm {

static const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);

static double log_normal_pdf(double z) { return -0.5 * z * z - kHalfLog2Pi; }

// d log P / d ls for the discretized Gaussian bin of x (see the header). With P = Phi(z+) - Phi(z-)
// and dz/dls = -z for both edges,
//   d log P / dls = (z- phi(z-) - z+ phi(z+)) / P,
// where an open edge (z- = -inf at x = -1, z+ = +inf at x = 1) contributes 0. Each phi(z) / P is
// formed in logs, with log P from discretized_gaussian_log_prob, so it holds far into the tails.
static double discretized_dlogp_dlog_scale(double x, double mean, double log_scale) {
  const double inv_scale = std::exp(-log_scale);
  const double half_bin = 1.0 / 255.0;
  const double z_plus = (x - mean + half_bin) * inv_scale, z_minus = (x - mean - half_bin) * inv_scale;
  const double log_p = discretized_gaussian_log_prob(x, mean, log_scale);
  double d = 0.0;
  if (!(x < -0.999)) d += z_minus * std::exp(log_normal_pdf(z_minus) - log_p);  // the bin of -1 reaches -inf
  if (!(x > 0.999)) d -= z_plus * std::exp(log_normal_pdf(z_plus) - log_p);     // the bin of +1 reaches +inf
  return d;
}

double vlb_element_forward_backward(double x0, double mean_q, double logvar_q, double mean_p, double logvar_p,
                                    bool decoder, double* dlogvar_p) {
  if (decoder) {
    // L = -log p(x_0 | x_1) with log_scale = lp / 2   (Ho et al. Eq. 13)
    const double log_scale = 0.5 * logvar_p;
    *dlogvar_p = -0.5 * discretized_dlogp_dlog_scale(x0, mean_p, log_scale);
    return -discretized_gaussian_log_prob(x0, mean_p, log_scale);
  }
  // L = KL(N(mu_q, e^lq) || N(mu_p, e^lp)) = 1/2 (-1 + lp - lq + e^(lq - lp) + (mu_q - mu_p)^2 e^-lp)
  const double d = mean_q - mean_p;
  const double ratio = std::exp(logvar_q - logvar_p), d2_over_var = d * d * std::exp(-logvar_p);
  // dL/dlp = 1/2 (1 - e^(lq - lp) - (mu_q - mu_p)^2 e^-lp)
  *dlogvar_p = 0.5 * (1.0 - ratio - d2_over_var);
  return 0.5 * (-1.0 + logvar_p - logvar_q + ratio + d2_over_var);
}

HybridLoss hybrid_loss(Tape& tape, const Schedule& s, const Var& out, const Tensor& target, const Tensor& x0,
                       const Tensor& x_t, const std::vector<int64_t>& t, const HybridLossOptions& options) {
  const Tensor& o = out->value;
  check_timesteps(s, x_t, t, "hybrid_loss");
  DDPM_CHECK(x_t.dim() == 4 && o.dim() == 4 && o.size(0) == x_t.size(0) && o.size(1) == 2 * x_t.size(1) &&
                 o.size(2) == x_t.size(2) && o.size(3) == x_t.size(3),
             "hybrid_loss: model output " << o.shape_str() << " must be [N, 2C, H, W] for x_t " << x_t.shape_str()
                                          << " (a learned-variance model: eps channels, then r channels)");
  DDPM_CHECK(target.shape() == x_t.shape() && x0.shape() == x_t.shape(),
             "hybrid_loss: target " << target.shape_str() << " and x0 " << x0.shape_str() << " must be x_t's "
                                    << x_t.shape_str());
  const int64_t N = x_t.size(0), C = x_t.size(1), HW = x_t.size(2) * x_t.size(3), D = C * HW;
  std::vector<double> w = options.weights.empty() ? std::vector<double>(N, 1.0) : options.weights;
  DDPM_CHECK(static_cast<int64_t>(w.size()) == N, "hybrid_loss: " << w.size() << " weights for N = " << N);

  // Split the output: prediction [N, C, H, W] and r [N, C, H, W].
  Tensor prediction({N, C, x_t.size(2), x_t.size(3)}), r(prediction.shape());
  for (int64_t n = 0; n < N; n++)
    for (int64_t j = 0; j < D; j++) {
      prediction[n * D + j] = o[n * 2 * D + j];
      r[n * D + j] = o[n * 2 * D + D + j];
    }
  // mu_theta from the eps the prediction implies, gradient stopped   (Eq. 11; Nichol & Dhariwal Sec. 3.1)
  const Tensor mean_p = posterior_mean_from_eps(s, x_t, t, eps_from_prediction(options.predict, s, x_t, t, prediction));
  const Gaussian q = q_posterior(s, x0, x_t, t);

  HybridLoss h;
  h.per_sample.resize(N);
  h.vb_bpd.resize(N);
  // dL/dr per element, before the upstream gradient and the sample weight.
  auto dr = std::make_shared<std::vector<double>>(N * D);
  const double vb_scale = options.lambda * static_cast<double>(s.T);  // lambda T: L_vlb ~ T vb
  double total = 0.0;
  for (int64_t i = 0; i < N; i++) {
    const double max_log = std::log(s.beta[t[i]]), min_log = s.posterior_log_variance_clipped[t[i]];
    const bool decoder = t[i] == 1;
    double sse = 0.0, vb = 0.0;
    for (int64_t j = 0; j < D; j++) {
      const int64_t k = i * D + j;
      const double d = static_cast<double>(prediction[k]) - target[k];
      sse += d * d;
      // log Sigma = frac log beta_t + (1 - frac) log beta-tilde_t, frac = (r + 1) / 2
      const double frac = 0.5 * (static_cast<double>(r[k]) + 1.0);
      const double logvar_p = frac * max_log + (1.0 - frac) * min_log;
      double dlogvar = 0.0;
      vb += vlb_element_forward_backward(x0[k], q.mean[k], q.log_variance[k], mean_p[k], logvar_p, decoder, &dlogvar);
      // dlp/dr = (max_log - min_log) / 2
      (*dr)[k] = dlogvar * 0.5 * (max_log - min_log);
    }
    h.vb_bpd[i] = vb / (static_cast<double>(D) * std::log(2.0));  // mean_j L_ij / ln 2
    h.per_sample[i] = sse / D + vb_scale * h.vb_bpd[i];
    total += w[i] * h.per_sample[i];
  }
  Tensor value({1});
  value[0] = static_cast<float>(total / N);  // (1/N) sum_i w_i [mean_j (target - pred)^2 + lambda T vb_i]
  h.loss = tape.record("hybrid_loss", value, {out}, [out, prediction, target, dr, w, N, D, vb_scale](Node& node) {
    // loss = (1/N) sum_i w_i [ (1/D) sum_j (pred_ij - target_ij)^2 + lambda T (1/(D ln 2)) sum_j L_ij(r_ij) ]
    //   => d pred_ij += dloss w_i (2 / (N D)) (pred_ij - target_ij)
    //      d r_ij    += dloss w_i lambda T / (N D ln 2) dL_ij/dr_ij        (the mean gets no VLB gradient)
    float* d = out->grad_ref().data();
    const double g = node.grad[0];
    for (int64_t i = 0; i < N; i++) {
      const double g_mse = g * w[i] * 2.0 / (static_cast<double>(N) * D);
      const double g_vb = g * w[i] * vb_scale / (static_cast<double>(N) * D * std::log(2.0));
      for (int64_t j = 0; j < D; j++) {
        const int64_t k = i * D + j;
        d[i * 2 * D + j] += static_cast<float>(g_mse * (static_cast<double>(prediction[k]) - target[k]));
        d[i * 2 * D + D + j] += static_cast<float>(g_vb * (*dr)[k]);
      }
    }
  });
  return h;
}

}  // namespace ddpm

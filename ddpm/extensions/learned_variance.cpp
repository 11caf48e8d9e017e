#include "ddpm/extensions/learned_variance.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/gaussian.h"

namespace ddpm {

LearnedOutput split_learned_output(const Tensor& out) {
  DDPM_CHECK(out.defined() && out.dim() == 4 && out.size(1) % 2 == 0,
             "split_learned_output: the output " << (out.defined() ? out.shape_str() : "(undefined)")
                                                 << " must be [N, 2C, H, W]: the prediction's channels, then r's");
  const int64_t N = out.size(0), C = out.size(1) / 2, D = C * out.size(2) * out.size(3);
  LearnedOutput o{Tensor({N, C, out.size(2), out.size(3)}), Tensor({N, C, out.size(2), out.size(3)})};
  for (int64_t n = 0; n < N; n++) {
    std::copy(out.data() + n * 2 * D, out.data() + n * 2 * D + D, o.prediction.data() + n * D);
    std::copy(out.data() + n * 2 * D + D, out.data() + (n + 1) * 2 * D, o.r.data() + n * D);
  }
  return o;
}

double learned_log_variance(const Schedule& s, int64_t t, double r) {
  // log Sigma = frac log beta_t + (1 - frac) log beta-tilde_t, frac = (r + 1) / 2
  //   (Nichol & Dhariwal 2021, Eq. 15; improved-diffusion's LEARNED_RANGE)
  const double max_log = std::log(s.beta[t]), min_log = s.posterior_log_variance_clipped[t];
  const double frac = 0.5 * (r + 1.0);
  return frac * max_log + (1.0 - frac) * min_log;
}

Sigma learned_sigma(const Schedule& s, const Tensor& r, const std::vector<int64_t>& t) {
  check_timesteps(s, r, t, "learned_sigma");
  const int64_t N = r.size(0), D = r.numel() / N;
  Sigma sigma{Tensor(r.shape()), Tensor(r.shape())};
  for (int64_t i = 0; i < N; i++)
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      const double lv = learned_log_variance(s, t[i], r[j]);
      sigma.log_variance[j] = static_cast<float>(lv);
      sigma.variance[j] = static_cast<float>(std::exp(lv));
    }
  return sigma;
}

ModelFn learned_variance_model(const Schedule& s, EpsFn network, PredictionTarget target) {
  return [&s, network, target](const Tensor& x_t, const std::vector<int64_t>& t) {
    const LearnedOutput o = split_learned_output(network(x_t, t));
    return ModelPrediction{eps_from_prediction(target, s, x_t, t, o.prediction), learned_sigma(s, o.r, t)};
  };
}

double vlb_element_forward_backward(double x0, double mean_q, double logvar_q, double mean_p, double logvar_p,
                                    bool decoder, double* dlogvar_p) {
  if (decoder) {
    // L = -log p(x_0 | x_1) with log_scale = lp / 2   (Ho et al. Eq. 13): dL/dlp = -1/2 d log P / d ls
    double dlog_scale = 0.0;
    const double log_p = discretized_gaussian_log_prob(x0, mean_p, 0.5 * logvar_p, &dlog_scale);
    *dlogvar_p = -0.5 * dlog_scale;
    return -log_p;
  }
  // L = KL(N(mu_q, e^lq) || N(mu_p, e^lp))   (Ho et al. Eq. 5)
  return normal_kl(mean_q, logvar_q, mean_p, logvar_p, dlogvar_p);
}

// The shapes hybrid_loss takes: out [N, 2C, H, W] for x_t, target and x0 [N, C, H, W], and
// one weight per sample when weights are given.
static void check_hybrid_inputs(const Schedule& s, const Tensor& o, const Tensor& target, const Tensor& x0,
                                const Tensor& x_t, const std::vector<int64_t>& t, const std::vector<double>& weights) {
  check_timesteps(s, x_t, t, "hybrid_loss");
  DDPM_CHECK(x_t.dim() == 4 && o.dim() == 4 && o.size(0) == x_t.size(0) && o.size(1) == 2 * x_t.size(1) &&
                 o.size(2) == x_t.size(2) && o.size(3) == x_t.size(3),
             "hybrid_loss: model output " << o.shape_str() << " must be [N, 2C, H, W] for x_t " << x_t.shape_str()
                                          << " (a learned-variance model: eps channels, then r channels)");
  DDPM_CHECK(target.shape() == x_t.shape() && x0.shape() == x_t.shape(),
             "hybrid_loss: target " << target.shape_str() << " and x0 " << x0.shape_str() << " must be x_t's "
                                    << x_t.shape_str());
  const size_t N = static_cast<size_t>(x_t.size(0));
  DDPM_CHECK(weights.empty() || weights.size() == N, "hybrid_loss: " << weights.size() << " weights for N = " << N);
}

HybridLoss hybrid_loss(Tape& tape, const Schedule& s, const Var& out, const Tensor& target, const Tensor& x0,
                       const Tensor& x_t, const std::vector<int64_t>& t, const HybridLossOptions& options) {
  const Tensor& o = out->value;
  check_hybrid_inputs(s, o, target, x0, x_t, t, options.weights);
  const int64_t N = x_t.size(0), C = x_t.size(1), HW = x_t.size(2) * x_t.size(3), D = C * HW;
  const std::vector<double> w = options.weights.empty() ? std::vector<double>(N, 1.0) : options.weights;

  const LearnedOutput split = split_learned_output(o);
  const Tensor& prediction = split.prediction;
  const Tensor& r = split.r;
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
    // dlp/dr = (log beta_t - log beta-tilde_t) / 2
    const double dlp_dr = 0.5 * (std::log(s.beta[t[i]]) - s.posterior_log_variance_clipped[t[i]]);
    const bool decoder = t[i] == 1;
    double sse = 0.0, vb = 0.0;
    for (int64_t j = 0; j < D; j++) {
      const int64_t k = i * D + j;
      const double d = static_cast<double>(prediction[k]) - target[k];
      sse += d * d;
      const double logvar_p = learned_log_variance(s, t[i], r[k]);
      double dlogvar = 0.0;
      vb += vlb_element_forward_backward(x0[k], q.mean[k], q.log_variance[k], mean_p[k], logvar_p, decoder, &dlogvar);
      (*dr)[k] = dlogvar * dlp_dr;
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

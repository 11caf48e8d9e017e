#include "ddpm/ops/group_norm.h"

#include <cmath>
#include <vector>

#include "ddpm/check.h"
#include "ddpm/parallel.h"
#include "ddpm/profile.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Kernels. Group (n, g) is the contiguous block of Cg*HW values starting at
// x + (n*C + g*Cg)*HW = x + (n*G + g)*Cg*HW.

void group_norm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        int64_t N, int64_t C, int64_t HW, int64_t G, float eps) {
  const int64_t Cg = C / G, M = Cg * HW;
  parallel_for(N * G, [&](int64_t ng0, int64_t ng1) {
    for (int64_t ng = ng0; ng < ng1; ng++) {
      const int64_t g = ng % G;
      const float* xg = x + ng * M;
      float* outg = out + ng * M;
      // mean = (1/M) sum x;  var = (1/M) sum (x - mean)^2   (two passes, in double)
      double s = 0.0;
      for (int64_t i = 0; i < M; i++) s += xg[i];
      const double mu = M > 0 ? s / M : 0.0;
      double ss = 0.0;
      for (int64_t i = 0; i < M; i++) {
        const double d = xg[i] - mu;
        ss += d * d;
      }
      const double var = M > 0 ? ss / M : 0.0;
      mean[ng] = static_cast<float>(mu);
      rstd[ng] = static_cast<float>(1.0 / std::sqrt(var + eps));  // rstd = 1 / sqrt(var + eps)
      const float m = mean[ng], r = rstd[ng];
      for (int64_t c = 0; c < Cg; c++) {
        const int64_t ch = g * Cg + c;
        const float scale = r * gamma[ch], shift = beta[ch];
        const float* xc = xg + c * HW;
        float* oc = outg + c * HW;
        // out = (x - mean) * rstd * gamma + beta
        for (int64_t p = 0; p < HW; p++) oc[p] = (xc[p] - m) * scale + shift;
      }
    }
  });
}

void group_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x, const float* mean,
                         const float* rstd, const float* gamma, int64_t N, int64_t C, int64_t HW, int64_t G) {
  if (!dx && !dgamma && !dbeta) return;
  const int64_t Cg = C / G, M = Cg * HW;
  // Per (n, c): sum over p of dout (-> dbeta) and of dout * xhat (-> dgamma).
  std::vector<double> sum_dout(N * C), sum_dout_xhat(N * C);
  parallel_for(N * G, [&](int64_t ng0, int64_t ng1) {
    for (int64_t ng = ng0; ng < ng1; ng++) {
      const int64_t n = ng / G, g = ng % G;
      const float m = mean[ng], r = rstd[ng];
      const float* xg = x + ng * M;
      const float* dg = dout + ng * M;
      // The group sums of dxhat = dout * gamma and of dxhat * xhat.
      double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
      for (int64_t c = 0; c < Cg; c++) {
        const int64_t ch = g * Cg + c;
        const float* xc = xg + c * HW;
        const float* dc = dg + c * HW;
        double sd = 0.0, sdx = 0.0;
        for (int64_t p = 0; p < HW; p++) {
          const float xhat = (xc[p] - m) * r;
          sd += dc[p];
          sdx += static_cast<double>(dc[p]) * xhat;
        }
        sum_dout[n * C + ch] = sd;
        sum_dout_xhat[n * C + ch] = sdx;
        sum_dxhat += gamma[ch] * sd;
        sum_dxhat_xhat += gamma[ch] * sdx;
      }
      if (!dx) continue;
      // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
      const float mean_dxhat = M > 0 ? static_cast<float>(sum_dxhat / M) : 0.0f;
      const float mean_dxhat_xhat = M > 0 ? static_cast<float>(sum_dxhat_xhat / M) : 0.0f;
      float* dxg = dx + ng * M;
      for (int64_t c = 0; c < Cg; c++) {
        const float gam = gamma[g * Cg + c];
        const float* xc = xg + c * HW;
        const float* dc = dg + c * HW;
        float* dxc = dxg + c * HW;
        for (int64_t p = 0; p < HW; p++) {
          const float xhat = (xc[p] - m) * r;  // out = xhat * gamma + beta
          dxc[p] += r * (dc[p] * gam - mean_dxhat - xhat * mean_dxhat_xhat);
        }
      }
    }
  });
  // dgamma[c] += sum over n of sum_dout_xhat[n, c];  dbeta[c] += sum over n of sum_dout[n, c]
  // (n in order, so the result does not depend on how the threads split (n, g)).
  for (int64_t ch = 0; ch < C; ch++) {
    double sg = 0.0, sb = 0.0;
    for (int64_t n = 0; n < N; n++) {
      sg += sum_dout_xhat[n * C + ch];
      sb += sum_dout[n * C + ch];
    }
    if (dgamma) dgamma[ch] += static_cast<float>(sg);
    if (dbeta) dbeta[ch] += static_cast<float>(sb);
  }
}

// ---------------------------------------------------------------------------
// Plain twins: the formulas above, indexed by (n, c, p), in double.

void group_norm_forward_ref(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                            const float* beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps) {
  const int64_t Cg = C / G;
  const double M = static_cast<double>(Cg * HW);
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      double s = 0.0, ss = 0.0;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
        for (int64_t p = 0; p < HW; p++) s += x[(n * C + c) * HW + p];
      const double mu = s / M;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
        for (int64_t p = 0; p < HW; p++) ss += (x[(n * C + c) * HW + p] - mu) * (x[(n * C + c) * HW + p] - mu);
      const double r = 1.0 / std::sqrt(ss / M + eps);
      mean[n * G + g] = static_cast<float>(mu);
      rstd[n * G + g] = static_cast<float>(r);
      for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
        for (int64_t p = 0; p < HW; p++) {
          const int64_t i = (n * C + c) * HW + p;
          out[i] = static_cast<float>((x[i] - mu) * r * gamma[c] + beta[c]);
        }
    }
}

void group_norm_backward_ref(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                             const float* mean, const float* rstd, const float* gamma, int64_t N, int64_t C,
                             int64_t HW, int64_t G) {
  const int64_t Cg = C / G;
  const double M = static_cast<double>(Cg * HW);
  std::vector<double> dgamma_acc(C), dbeta_acc(C);
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      const double mu = mean[n * G + g], r = rstd[n * G + g];
      double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
        for (int64_t p = 0; p < HW; p++) {
          const int64_t i = (n * C + c) * HW + p;
          const double xhat = (x[i] - mu) * r;
          sum_dxhat += static_cast<double>(dout[i]) * gamma[c];
          sum_dxhat_xhat += static_cast<double>(dout[i]) * gamma[c] * xhat;
          dgamma_acc[c] += dout[i] * xhat;
          dbeta_acc[c] += dout[i];
        }
      if (!dx) continue;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
        for (int64_t p = 0; p < HW; p++) {
          const int64_t i = (n * C + c) * HW + p;
          const double xhat = (x[i] - mu) * r;
          dx[i] += static_cast<float>(r * (static_cast<double>(dout[i]) * gamma[c] - sum_dxhat / M -
                                           xhat * sum_dxhat_xhat / M));
        }
    }
  for (int64_t c = 0; c < C; c++) {
    if (dgamma) dgamma[c] += static_cast<float>(dgamma_acc[c]);
    if (dbeta) dbeta[c] += static_cast<float>(dbeta_acc[c]);
  }
}

// ---------------------------------------------------------------------------
// Tape op

Var group_norm(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps) {
  const Tensor& xv = x->value;
  DDPM_CHECK(xv.dim() >= 2, "group_norm: x " << xv.shape_str() << " must be [N, C, ...] (2 to 4 dims)");
  const int64_t N = xv.size(0), C = xv.size(1);
  int64_t HW = 1;
  for (int64_t d = 2; d < xv.dim(); d++) HW *= xv.size(d);
  DDPM_CHECK(groups >= 1 && C % groups == 0,
             "group_norm: C = " << C << " (x " << xv.shape_str() << ") is not divisible by groups = " << groups
                                << "; pick a group count that divides the channels");
  DDPM_CHECK(gamma->value.shape() == Shape{C} && beta->value.shape() == Shape{C},
             "group_norm: gamma " << gamma->value.shape_str() << " and beta " << beta->value.shape_str()
                                  << " must both be [" << C << "] for x " << xv.shape_str());
  DDPM_CHECK(eps > 0.0f, "group_norm: eps = " << eps << " must be > 0");
  const int64_t G = groups;
  ProfileScope timer(ProfileOp::group_norm);
  Tensor out = Tensor::empty(xv.shape()), mean({N, G}), rstd({N, G});
  group_norm_forward(out.data(), mean.data(), rstd.data(), xv.data(), gamma->value.data(), beta->value.data(), N,
                     C, HW, G, eps);
  return tape.record("group_norm", out, {x, gamma, beta}, [x, gamma, beta, mean, rstd, N, C, HW, G](Node& o) {
    ProfileScope timer(ProfileOp::group_norm);
    group_norm_backward(x->requires_grad ? x->grad_ref().data() : nullptr,
                        gamma->requires_grad ? gamma->grad_ref().data() : nullptr,
                        beta->requires_grad ? beta->grad_ref().data() : nullptr, o.grad.data(), x->value.data(),
                        mean.data(), rstd.data(), gamma->value.data(), N, C, HW, G);
  });
}

}  // namespace ddpm

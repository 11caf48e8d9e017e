#include "ddpm/ops/group_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/conv.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"
#include "ddpm/core/simd.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Kernels. Group (n, g) is the contiguous block of Cg*HW values starting at
// x + (n*C + g*Cg)*HW = x + (n*G + g)*Cg*HW.
//
// The sums run in vector lanes of float over chunks of kChunk values, and the chunk
// sums are added in double: float rounding only ever sees kChunk / kLanes terms per
// lane, and the order is fixed by the sizes alone (never by the thread split).

namespace {

constexpr int64_t kChunk = 256;

// sum over i < n of x[i] - shift, and of (x[i] - shift)^2
void sums_shifted(const float* x, int64_t n, float shift, double* sum, double* sum_sq) {
  using namespace simd;
  double s = 0.0, ss = 0.0;
  const Vec vshift = set1(shift);
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = std::min(n, c0 + kChunk);
    Vec vs = zero(), vss = zero();
    int64_t i = c0;
    for (; i + kLanes <= c1; i += kLanes) {
      const Vec d = sub(load(x + i), vshift);
      vs = add(vs, d);
      vss = mul_add(d, d, vss);
    }
    float ts = reduce_sum(vs), tss = reduce_sum(vss);
    for (; i < c1; i++) {  // tail
      const float d = x[i] - shift;
      ts += d;
      tss += d * d;
    }
    s += ts;
    ss += tss;
  }
  *sum = s;
  *sum_sq = ss;
}

// sum over i < n of dout[i], and of dout[i] * (x[i] - mean)
void sums_dout(const float* dout, const float* x, int64_t n, float mean, double* sum_d, double* sum_dx) {
  using namespace simd;
  double sd = 0.0, sdx = 0.0;
  const Vec vmean = set1(mean);
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t c1 = std::min(n, c0 + kChunk);
    Vec vd = zero(), vdx = zero();
    int64_t i = c0;
    for (; i + kLanes <= c1; i += kLanes) {
      const Vec d = load(dout + i);
      vd = add(vd, d);
      vdx = mul_add(d, sub(load(x + i), vmean), vdx);
    }
    float td = reduce_sum(vd), tdx = reduce_sum(vdx);
    for (; i < c1; i++) {  // tail
      td += dout[i];
      tdx += dout[i] * (x[i] - mean);
    }
    sd += td;
    sdx += tdx;
  }
  *sum_d = sd;
  *sum_dx = sdx;
}

// y = (x - mean) * (rstd * gamma) + beta for the vector at xc + p of a channel, its first n lanes.
simd::Vec normalize_vec(const float* xc, int64_t p, int n, simd::Vec vm, simd::Vec vscale, simd::Vec vshift) {
  using namespace simd;
  const Vec x = n == kLanes ? load(xc + p) : load_first(xc + p, n);
  return mul_add(sub(x, vm), vscale, vshift);
}

// out = (x - mean) * rstd * gamma + beta over one group's Cg channels of HW values. The
// tail is the same vector arithmetic on its first lanes (no separate scalar expression,
// whose rounding would hang on the compiler contracting it into an FMA).
void normalize_group(float* out, const float* x, float m, float r, const float* gamma, const float* beta, int64_t Cg,
                     int64_t HW) {
  using namespace simd;
  for (int64_t c = 0; c < Cg; c++) {
    const float* xc = x + c * HW;
    float* oc = out + c * HW;
    const Vec vm = set1(m), vscale = set1(r * gamma[c]), vshift = set1(beta[c]);
    for (int64_t p = 0; p < HW; p += kLanes) {
      const int n = static_cast<int>(std::min<int64_t>(kLanes, HW - p));
      const Vec y = normalize_vec(xc, p, n, vm, vscale, vshift);
      if (n == kLanes)
        store(oc + p, y);
      else
        store_first(oc + p, y, n);  // tail
    }
  }
}

// The statistics of one group's M values xg.
// mean = (1/M) sum x;  var = (1/M) sum (x - mean)^2   (two passes)
// Pass 1 gives a first mean m0. Pass 2 sums d = x - m0, small numbers whatever
// the mean, so float lanes lose little:
//   mean = m0 + (sum d) / M,   M var = sum d^2 - (sum d)^2 / M   (exact for any m0)
void group_stats(const float* xg, int64_t M, float eps, float* mean, float* rstd) {
  double s, unused;
  sums_shifted(xg, M, 0.0f, &s, &unused);
  const float m0 = M > 0 ? static_cast<float>(s / M) : 0.0f;
  double sd, ss;
  sums_shifted(xg, M, m0, &sd, &ss);
  const double var = M > 0 ? std::max(0.0, (ss - sd * sd / M) / M) : 0.0;
  *mean = M > 0 ? static_cast<float>(m0 + sd / M) : 0.0f;
  *rstd = static_cast<float>(1.0 / std::sqrt(var + eps));  // rstd = 1 / sqrt(var + eps)
}

}  // namespace

void group_norm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        int64_t N, int64_t C, int64_t HW, int64_t G, float eps) {
  const int64_t Cg = C / G, M = Cg * HW;
  parallel_for(N * G, [&](int64_t ng0, int64_t ng1) {
    for (int64_t ng = ng0; ng < ng1; ng++) {
      const int64_t g = ng % G;
      group_stats(x + ng * M, M, eps, &mean[ng], &rstd[ng]);
      normalize_group(out + ng * M, x + ng * M, mean[ng], rstd[ng], gamma + g * Cg, beta + g * Cg, Cg, HW);
    }
  });
}

void group_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x, const float* mean,
                         const float* rstd, const float* gamma, int64_t N, int64_t C, int64_t HW, int64_t G) {
  using namespace simd;
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
      // The group sums of dxhat = dout * gamma and of dxhat * xhat, xhat = (x - mean) * rstd.
      double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
      for (int64_t c = 0; c < Cg; c++) {
        const int64_t ch = g * Cg + c;
        double sd, sdx;
        sums_dout(dg + c * HW, xg + c * HW, HW, m, &sd, &sdx);
        sdx *= r;
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
      const Vec vm = set1(m), vr = set1(r), vmean_dxhat = set1(mean_dxhat), vmean_dxhat_xhat = set1(mean_dxhat_xhat);
      for (int64_t c = 0; c < Cg; c++) {
        const float gam = gamma[g * Cg + c];
        const Vec vgam = set1(gam);
        const float* xc = xg + c * HW;
        const float* dc = dg + c * HW;
        float* dxc = dxg + c * HW;
        int64_t p = 0;
        for (; p + kLanes <= HW; p += kLanes) {
          const Vec xhat = mul(sub(load(xc + p), vm), vr);  // out = xhat * gamma + beta
          const Vec t = sub(sub(mul(load(dc + p), vgam), vmean_dxhat), mul(xhat, vmean_dxhat_xhat));
          store(dxc + p, mul_add(vr, t, load(dxc + p)));
        }
        for (; p < HW; p++) {  // tail
          const float xhat = (xc[p] - m) * r;
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

template <typename T>
void group_norm_forward_ref(T* out, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, int64_t N, int64_t C,
                            int64_t HW, int64_t G, float eps) {
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
      mean[n * G + g] = static_cast<T>(mu);
      rstd[n * G + g] = static_cast<T>(r);
      for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
        for (int64_t p = 0; p < HW; p++) {
          const int64_t i = (n * C + c) * HW + p;
          out[i] = static_cast<T>((x[i] - mu) * r * gamma[c] + beta[c]);
        }
    }
}
template void group_norm_forward_ref<float>(float*, float*, float*, const float*, const float*, const float*, int64_t,
                                           int64_t, int64_t, int64_t, float);
template void group_norm_forward_ref<double>(double*, double*, double*, const double*, const double*, const double*,
                                            int64_t, int64_t, int64_t, int64_t, float);

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
// GroupNorm + SiLU: the kernels above and silu's, composed.

void group_norm_silu_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                             const float* beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps) {
  group_norm_forward(out, mean, rstd, x, gamma, beta, N, C, HW, G, eps);  // y
  silu_forward(out, out, N * C * HW);                                      // out = silu(y), in place
}

void group_norm_silu_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                              const float* mean, const float* rstd, const float* gamma, const float* beta, int64_t N,
                              int64_t C, int64_t HW, int64_t G) {
  const int64_t n = N * C * HW, Cg = C / G, M = Cg * HW;
  // y = xhat * gamma + beta, recomputed from the cached statistics.
  Tensor y = Tensor::empty({n}), dy = Tensor::zeros({n});  // scratch
  parallel_for(N * G, [&](int64_t ng0, int64_t ng1) {
    for (int64_t ng = ng0; ng < ng1; ng++) {
      const int64_t g = ng % G;
      normalize_group(y.data() + ng * M, x + ng * M, mean[ng], rstd[ng], gamma + g * Cg, beta + g * Cg, Cg, HW);
    }
  });
  silu_backward(dy.data(), dout, y.data(), n);  // dy = dout * silu'(y)   (out = silu(y))
  group_norm_backward(dx, dgamma, dbeta, dy.data(), x, mean, rstd, gamma, N, C, HW, G);
}

void group_norm_silu_planes_forward(float* planes, float* mean, float* rstd, const float* x, const float* gamma,
                                    const float* beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps,
                                    const ConvPlanes& p, const float* x_tail, int64_t C_head) {
  const int64_t Cg = C / G, M = Cg * HW, image = C * p.channel_floats();
  if (!x_tail) C_head = C;
  DDPM_CHECK(p.planes == 3 && p.C == C && p.H * p.W == HW,
             "group_norm_silu_planes_forward: wants the planes of a stride-1 3x3 convolution of [" << C << ", " << HW
                                                                                                 << "] values");
  DDPM_CHECK(C_head >= 0 && C_head <= C, "group_norm_silu_planes_forward: C_head " << C_head << " not in 0.." << C);
  // Channel c of image n (concat_channels(x, x_tail)'s layout, without the copy).
  auto channel = [&](int64_t n, int64_t c) {
    return c < C_head ? x + (n * C_head + c) * HW : x_tail + (n * (C - C_head) + c - C_head) * HW;
  };
  parallel_for(N * G, [&](int64_t ng0, int64_t ng1) {
    std::vector<float> gathered;  // scratch: a group across the seam, in concat's order
    for (int64_t ng = ng0; ng < ng1; ng++) {
      const int64_t n = ng / G, g = ng % G, c0 = g * Cg;
      const float* xg = channel(n, c0);
      if (c0 < C_head && c0 + Cg > C_head) {
        gathered.resize(M);
        for (int64_t c = c0; c < c0 + Cg; c++) std::copy(channel(n, c), channel(n, c) + HW, gathered.data() + (c - c0) * HW);
        xg = gathered.data();
      }
      group_stats(xg, M, eps, &mean[ng], &rstd[ng]);
      for (int64_t c = c0; c < c0 + Cg; c++) {
        // y = xhat * gamma + beta, then silu(y), one vector at a time: group_norm_silu_forward's
        // arithmetic (normalize_group's, then silu_forward's), stored into the three planes
        // at once, each shifted by its column tap (conv.h):
        //   plane_0[W + 1 + m] = plane_1[W + m] = plane_2[W - 1 + m] = silu(y[m])
        // then the zero column of planes 0 and 2 and the zero rows.
        using namespace simd;
        const float* xc = channel(n, c);
        float* d1 = conv2d_center_plane(planes + n * image + c * p.channel_floats(), p);
        float* d0 = d1 - p.plane_floats + 1;
        float* d2 = d1 + p.plane_floats - 1;
        const Vec vm = set1(mean[ng]), vscale = set1(rstd[ng] * gamma[c]), vshift = set1(beta[c]);
        for (int64_t q = 0; q < HW; q += kLanes) {
          const int n_lanes = static_cast<int>(std::min<int64_t>(kLanes, HW - q));
          const Vec s = simd::silu(normalize_vec(xc, q, n_lanes, vm, vscale, vshift));
          if (n_lanes == kLanes) {
            store(d0 + q, s);
            store(d1 + q, s);
            store(d2 + q, s);
          } else {
            store_first(d0 + q, s, n_lanes);
            store_first(d1 + q, s, n_lanes);
            store_first(d2 + q, s, n_lanes);
          }
        }
        conv2d_zero_planes_border(planes + n * image + c * p.channel_floats(), p);
      }
    }
  });
}

template <typename T>
void group_norm_silu_forward_ref(T* out, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, int64_t N,
                                 int64_t C, int64_t HW, int64_t G, float eps) {
  std::vector<T> y(N * C * HW);
  group_norm_forward_ref(y.data(), mean, rstd, x, gamma, beta, N, C, HW, G, eps);
  silu_forward_ref(out, y.data(), N * C * HW);
}
template void group_norm_silu_forward_ref<float>(float*, float*, float*, const float*, const float*, const float*,
                                                int64_t, int64_t, int64_t, int64_t, float);
template void group_norm_silu_forward_ref<double>(double*, double*, double*, const double*, const double*,
                                                 const double*, int64_t, int64_t, int64_t, int64_t, float);

void group_norm_silu_backward_ref(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                                  const float* mean, const float* rstd, const float* gamma, const float* beta,
                                  int64_t N, int64_t C, int64_t HW, int64_t G) {
  const int64_t Cg = C / G;
  std::vector<float> y(N * C * HW), dy(N * C * HW, 0.0f);
  for (int64_t i = 0; i < N * C * HW; i++) {
    const int64_t c = (i / HW) % C, ng = i / (Cg * HW);
    y[i] = static_cast<float>((static_cast<double>(x[i]) - mean[ng]) * rstd[ng] * gamma[c] + beta[c]);
  }
  silu_backward_ref(dy.data(), dout, y.data(), N * C * HW);
  group_norm_backward_ref(dx, dgamma, dbeta, dy.data(), x, mean, rstd, gamma, N, C, HW, G);
}

// ---------------------------------------------------------------------------
// Tape op

namespace {

struct GroupNormSize {
  int64_t N, C, HW, G;
};

GroupNormSize check_group_norm(const char* op, const Var& x, const Var& gamma, const Var& beta, int64_t groups,
                               float eps) {
  const Tensor& xv = x->value;
  DDPM_CHECK(xv.dim() >= 2, op << ": x " << xv.shape_str() << " must be [N, C, ...] (2 to 4 dims)");
  const int64_t N = xv.size(0), C = xv.size(1);
  int64_t HW = 1;
  for (int64_t d = 2; d < xv.dim(); d++) HW *= xv.size(d);
  DDPM_CHECK(groups >= 1 && C % groups == 0,
             op << ": C = " << C << " (x " << xv.shape_str() << ") is not divisible by groups = " << groups
                << "; pick a group count that divides the channels");
  DDPM_CHECK(gamma->value.shape() == Shape{C} && beta->value.shape() == Shape{C},
             op << ": gamma " << gamma->value.shape_str() << " and beta " << beta->value.shape_str()
                << " must both be [" << C << "] for x " << xv.shape_str());
  DDPM_CHECK(eps > 0.0f, op << ": eps = " << eps << " must be > 0");
  return {N, C, HW, groups};
}

}  // namespace

Var group_norm(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps) {
  const GroupNormSize size = check_group_norm("group_norm", x, gamma, beta, groups, eps);
  const int64_t N = size.N, C = size.C, HW = size.HW, G = size.G;
  ProfileScope timer(ProfileOp::group_norm);
  Tensor out = Tensor::empty(x->value.shape()), mean({N, G}), rstd({N, G});
  group_norm_forward(out.data(), mean.data(), rstd.data(), x->value.data(), gamma->value.data(), beta->value.data(),
                     N, C, HW, G, eps);
  return tape.record("group_norm", out, {x, gamma, beta}, [x, gamma, beta, mean, rstd, N, C, HW, G](Node& o) {
    ProfileScope timer(ProfileOp::group_norm);
    group_norm_backward(x->requires_grad ? x->grad_ref().data() : nullptr,
                        gamma->requires_grad ? gamma->grad_ref().data() : nullptr,
                        beta->requires_grad ? beta->grad_ref().data() : nullptr, o.grad.data(), x->value.data(),
                        mean.data(), rstd.data(), gamma->value.data(), N, C, HW, G);
  });
}

Var group_norm_silu(Tape& tape, const Var& x, const Var& gamma, const Var& beta, int64_t groups, float eps) {
  const GroupNormSize size = check_group_norm("group_norm_silu", x, gamma, beta, groups, eps);
  const int64_t N = size.N, C = size.C, HW = size.HW, G = size.G;
  ProfileScope timer(ProfileOp::group_norm);
  Tensor out = Tensor::empty(x->value.shape()), mean({N, G}), rstd({N, G});
  group_norm_silu_forward(out.data(), mean.data(), rstd.data(), x->value.data(), gamma->value.data(),
                          beta->value.data(), N, C, HW, G, eps);
  return tape.record("group_norm_silu", out, {x, gamma, beta}, [x, gamma, beta, mean, rstd, N, C, HW, G](Node& o) {
    ProfileScope timer(ProfileOp::group_norm);
    group_norm_silu_backward(x->requires_grad ? x->grad_ref().data() : nullptr,
                             gamma->requires_grad ? gamma->grad_ref().data() : nullptr,
                             beta->requires_grad ? beta->grad_ref().data() : nullptr, o.grad.data(),
                             x->value.data(), mean.data(), rstd.data(), gamma->value.data(), beta->value.data(), N,
                             C, HW, G);
  });
}

}  // namespace ddpm

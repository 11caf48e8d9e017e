#include "ddpm/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"
#include "ddpm/core/simd.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Kernels.

namespace {

// row[j] = exp(scale (row[j] - max)) / sum over j of the same, in place, with simd::exp
// (at most 2 ulp; see simd.h). The tail runs through the same vector code on a padded
// copy (padded with the row max; those exps are dropped), so every element gets
// the same arithmetic.
void softmax_row(float* row, int64_t P, float scale) {
  using namespace simd;
  float row_max = row[0];
  for (int64_t j = 1; j < P; j++) row_max = std::max(row_max, row[j]);
  const Vec vmax = set1(row_max), vscale = set1(scale);
  Vec vtotal = zero();
  int64_t j = 0;
  for (; j + kLanes <= P; j += kLanes) {
    const Vec e = exp(mul(vscale, sub(load(row + j), vmax)));
    store(row + j, e);
    vtotal = add(vtotal, e);
  }
  float total = reduce_sum(vtotal);
  if (j < P) {  // tail, padded with the max (its exps are dropped)
    float t[kLanes];
    for (int64_t l = 0; l < kLanes; l++) t[l] = j + l < P ? row[j + l] : row_max;
    store(t, exp(mul(vscale, sub(load(t), vmax))));
    for (int64_t l = 0; j + l < P; l++) {
      row[j + l] = t[l];
      total += t[l];
    }
  }
  const Vec vinv = set1(1.0f / total);
  for (j = 0; j + kLanes <= P; j += kLanes) store(row + j, mul(load(row + j), vinv));
  for (; j < P; j++) row[j] *= 1.0f / total;  // tail
}

}  // namespace Image n's Q, K, V, out are the [C, P] blocks at offset n*C*P; its A is the
// [P, P] block at n*P*P. All sgemm operands are row-major with row stride P.

void attention_forward(float* out, float* A, const float* q, const float* k, const float* v, int64_t N, int64_t C,
                       int64_t P) {
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(C)));
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      const float *qn = q + n * C * P, *kn = k + n * C * P, *vn = v + n * C * P;
      float* An = A + n * P * P;
      // Q^T K   [P, P]   (unscaled; the scale goes into the softmax below)
      sgemm(true, false, P, P, C, qn, P, kn, P, An, P, false);
      // A[i, :] = softmax(S[i, :]),  S = Q^T K / sqrt(C): exp(S - max S) / sum exp(S - max S)
      for (int64_t i = 0; i < P; i++) softmax_row(An + i * P, P, scale);
      // out = V A^T   [C, P]
      sgemm(false, true, C, P, P, vn, P, An, P, out + n * C * P, P, false);
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* A, const float* q,
                        const float* k, const float* v, int64_t N, int64_t C, int64_t P) {
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(C)));
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    std::vector<float> dS(dq || dk ? P * P : 0);  // [P, P] scratch: dA, then dS in place
    for (int64_t n = n0; n < n1; n++) {
      const int64_t off = n * C * P;
      const float* An = A + n * P * P;
      // dV += dout A                                   (out = V A^T)
      if (dv) sgemm(false, false, C, P, P, dout + off, P, An, P, dv + off, P, true);
      if (!dq && !dk) continue;
      // dA = dout^T V   [P, P]
      sgemm(true, false, P, P, C, dout + off, P, v + off, P, dS.data(), P, false);
      // dS = A o (dA - rowsum(dA o A)), times 1/sqrt(C) for S = Q^T K / sqrt(C)
      for (int64_t i = 0; i < P; i++) {
        const float* a = An + i * P;
        float* d = dS.data() + i * P;
        double row_dot = 0.0;
        for (int64_t j = 0; j < P; j++) row_dot += static_cast<double>(d[j]) * a[j];
        const float dot = static_cast<float>(row_dot);
        for (int64_t j = 0; j < P; j++) d[j] = scale * a[j] * (d[j] - dot);
      }
      // dQ += K dS^T: dq[c, i] = sum over j of k[c, j] dS[i, j]
      if (dq) sgemm(false, true, C, P, P, k + off, P, dS.data(), P, dq + off, P, true);
      // dK += Q dS:   dk[c, j] = sum over i of q[c, i] dS[i, j]
      if (dk) sgemm(false, false, C, P, P, q + off, P, dS.data(), P, dk + off, P, true);
    }
  });
}

// ---------------------------------------------------------------------------
// Plain twins: the formulas with explicit indices, in double.

template <typename T>
void attention_forward_ref(T* out, T* A, const T* q, const T* k, const T* v, int64_t N, int64_t C, int64_t P) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(C));
  std::vector<double> S(P);
  for (int64_t n = 0; n < N; n++) {
    const T *qn = q + n * C * P, *kn = k + n * C * P, *vn = v + n * C * P;
    T* An = A + n * P * P;
    for (int64_t i = 0; i < P; i++) {
      double row_max = -INFINITY;
      for (int64_t j = 0; j < P; j++) {
        double s = 0.0;
        for (int64_t c = 0; c < C; c++) s += static_cast<double>(qn[c * P + i]) * kn[c * P + j];
        S[j] = s * scale;
        row_max = std::max(row_max, S[j]);
      }
      double total = 0.0;
      for (int64_t j = 0; j < P; j++) total += std::exp(S[j] - row_max);
      for (int64_t j = 0; j < P; j++) An[i * P + j] = static_cast<T>(std::exp(S[j] - row_max) / total);
    }
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < P; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < P; j++) s += static_cast<double>(An[i * P + j]) * vn[c * P + j];
        out[n * C * P + c * P + i] = static_cast<T>(s);
      }
  }
}
template void attention_forward_ref<float>(float*, float*, const float*, const float*, const float*, int64_t, int64_t,
                                          int64_t);
template void attention_forward_ref<double>(double*, double*, const double*, const double*, const double*, int64_t,
                                           int64_t, int64_t);

void attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* A, const float* q,
                            const float* k, const float* v, int64_t N, int64_t C, int64_t P) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(C));
  std::vector<double> dA(P * P), dS(P * P);
  for (int64_t n = 0; n < N; n++) {
    const int64_t off = n * C * P;
    const float* An = A + n * P * P;
    for (int64_t i = 0; i < P; i++)
      for (int64_t j = 0; j < P; j++) {
        double s = 0.0;
        for (int64_t c = 0; c < C; c++) s += static_cast<double>(dout[off + c * P + i]) * v[off + c * P + j];
        dA[i * P + j] = s;
      }
    for (int64_t i = 0; i < P; i++) {
      double row_dot = 0.0;
      for (int64_t j = 0; j < P; j++) row_dot += dA[i * P + j] * An[i * P + j];
      for (int64_t j = 0; j < P; j++) dS[i * P + j] = An[i * P + j] * (dA[i * P + j] - row_dot) * scale;
    }
    for (int64_t c = 0; c < C; c++)
      for (int64_t x = 0; x < P; x++) {
        double sq = 0.0, sk = 0.0, sv = 0.0;
        for (int64_t y = 0; y < P; y++) {
          sq += dS[x * P + y] * k[off + c * P + y];                            // dq[c, x]
          sk += dS[y * P + x] * q[off + c * P + y];                            // dk[c, x]
          sv += static_cast<double>(dout[off + c * P + y]) * An[y * P + x];  // dv[c, x]
        }
        if (dq) dq[off + c * P + x] += static_cast<float>(sq);
        if (dk) dk[off + c * P + x] += static_cast<float>(sk);
        if (dv) dv[off + c * P + x] += static_cast<float>(sv);
      }
  }
}

// ---------------------------------------------------------------------------
// Tape op

Var attention(Tape& tape, const Var& q, const Var& k, const Var& v) {
  const Shape& s = q->value.shape();
  DDPM_CHECK(s.size() == 4 && k->value.shape() == s && v->value.shape() == s,
             "attention: q " << q->value.shape_str() << ", k " << k->value.shape_str() << " and v "
                             << v->value.shape_str() << " must be the same [N, C, H, W] shape");
  const int64_t N = s[0], C = s[1], P = s[2] * s[3];
  DDPM_CHECK(C >= 1, "attention: q " << q->value.shape_str() << " has no channels; C must be >= 1");
  // Q^T K and V A^T: two GEMMs of 2 P P C flops per image; backward does four.
  const double flops = 4.0 * N * P * P * C;
  ProfileScope timer(ProfileOp::attention, flops, s[2]);
  Tensor out = Tensor::empty(s), A = Tensor::empty({N, P, P});
  attention_forward(out.data(), A.data(), q->value.data(), k->value.data(), v->value.data(), N, C, P);
  return tape.record("attention", out, {q, k, v}, [q, k, v, A, N, C, P, flops, s](Node& o) {
    ProfileScope timer(ProfileOp::attention, 2.0 * flops, s[2]);
    attention_backward(q->requires_grad ? q->grad_ref().data() : nullptr,
                       k->requires_grad ? k->grad_ref().data() : nullptr,
                       v->requires_grad ? v->grad_ref().data() : nullptr, o.grad.data(), A.data(), q->value.data(),
                       k->value.data(), v->value.data(), N, C, P);
  });
}

}  // namespace ddpm

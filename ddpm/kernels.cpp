#include "ddpm/kernels.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ddpm/parallel.h"
#include "ddpm/simd.h"

namespace ddpm {

using namespace simd;

// ---------------------------------------------------------------------------
// SGEMM

namespace {

constexpr int MR = 6;               // rows of C held in registers
constexpr int NR = 2 * kLanes;      // columns of C held in registers (two vectors)
constexpr int64_t KC = 256;         // depth of one packed block (fits L1/L2 panels)

// op(A)(i, k) and op(B)(k, j) read through the transposes.
inline float a_at(bool trans, const float* A, int64_t lda, int64_t i, int64_t k) {
  return trans ? A[k * lda + i] : A[i * lda + k];
}
inline float b_at(bool trans, const float* B, int64_t ldb, int64_t k, int64_t j) {
  return trans ? B[j * ldb + k] : B[k * ldb + j];
}

// Pack rows [i0, i0 + MR) of op(A), depth [k0, k0 + kc), as kc groups of MR values;
// rows past M are zero.
void pack_a(float* Ap, bool trans, const float* A, int64_t lda, int64_t M, int64_t i0, int64_t k0, int64_t kc) {
  for (int64_t k = 0; k < kc; k++)
    for (int r = 0; r < MR; r++) Ap[k * MR + r] = (i0 + r < M) ? a_at(trans, A, lda, i0 + r, k0 + k) : 0.0f;
}

// Pack columns [j0, j0 + NR) of op(B), depth [k0, k0 + kc), as kc rows of NR values;
// columns past N are zero.
void pack_b(float* Bp, bool trans, const float* B, int64_t ldb, int64_t N, int64_t j0, int64_t k0, int64_t kc) {
  for (int64_t k = 0; k < kc; k++) {
    float* row = Bp + k * NR;
    if (!trans && j0 + NR <= N) {
      std::memcpy(row, B + (k0 + k) * ldb + j0, NR * sizeof(float));
    } else {
      for (int j = 0; j < NR; j++) row[j] = (j0 + j < N) ? b_at(trans, B, ldb, k0 + k, j0 + j) : 0.0f;
    }
  }
}

// tile[MR][NR] = sum over k of Ap[k][r] * Bp[k][j], kept in 2*MR vector registers.
void microkernel(float* tile, const float* Ap, const float* Bp, int64_t kc) {
  Vec c[MR][2];
  for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = zero();
  for (int64_t k = 0; k < kc; k++) {
    Vec b0 = load(Bp + k * NR);
    Vec b1 = load(Bp + k * NR + kLanes);
    for (int r = 0; r < MR; r++) {
      Vec a = set1(Ap[k * MR + r]);
      c[r][0] = mul_add(a, b0, c[r][0]);
      c[r][1] = mul_add(a, b1, c[r][1]);
    }
  }
  for (int r = 0; r < MR; r++) {
    store(tile + r * NR, c[r][0]);
    store(tile + r * NR + kLanes, c[r][1]);
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, N * sizeof(float));
    return;
  }
  const int64_t m_panels = (M + MR - 1) / MR;
  const int64_t n_panels = (N + NR - 1) / NR;
  std::vector<float> Apack(m_panels * MR * std::min(K, KC));
  std::vector<float> Bpack(n_panels * NR * std::min(K, KC));
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool add_to_c = accumulate || k0 > 0;
    // Pack this depth block of op(A) and op(B) into panels.
    parallel_for(m_panels, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) pack_a(Apack.data() + p * MR * kc, trans_a, A, lda, M, p * MR, k0, kc);
    });
    parallel_for(n_panels, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) pack_b(Bpack.data() + p * NR * kc, trans_b, B, ldb, N, p * NR, k0, kc);
    });
    // Every (row panel, column panel) tile is independent: one task each.
    parallel_for(m_panels * n_panels, [&](int64_t t0, int64_t t1) {
      alignas(64) float tile[MR * NR];
      for (int64_t t = t0; t < t1; t++) {
        const int64_t pi = t / n_panels, pj = t % n_panels;
        microkernel(tile, Apack.data() + pi * MR * kc, Bpack.data() + pj * NR * kc, kc);
        const int64_t i0 = pi * MR, j0 = pj * NR;
        const int64_t rows = std::min<int64_t>(MR, M - i0), cols = std::min<int64_t>(NR, N - j0);
        for (int64_t r = 0; r < rows; r++) {
          float* c = C + (i0 + r) * ldc + j0;
          const float* s = tile + r * NR;
          if (add_to_c) {
            for (int64_t j = 0; j < cols; j++) c[j] += s[j];
          } else {
            for (int64_t j = 0; j < cols; j++) c[j] = s[j];
          }
        }
      }
    });
  }
}

void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = accumulate ? C[i * ldc + j] : 0.0;
      for (int64_t k = 0; k < K; k++)
        acc += static_cast<double>(a_at(trans_a, A, lda, i, k)) * b_at(trans_b, B, ldb, k, j);
      C[i * ldc + j] = static_cast<float>(acc);
    }
}

// ---------------------------------------------------------------------------
// Vector kernels: a vector loop, then a scalar tail.

void axpy(float* y, float a, const float* x, int64_t n) {
  int64_t i = 0;
  Vec va = set1(a);
  for (; i + kLanes <= n; i += kLanes) store(y + i, mul_add(va, load(x + i), load(y + i)));
  for (; i < n; i++) y[i] += a * x[i];  // tail
}

void axpy_ref(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

float dot(const float* x, const float* y, int64_t n) {
  int64_t i = 0;
  Vec acc = zero();
  for (; i + kLanes <= n; i += kLanes) acc = mul_add(load(x + i), load(y + i), acc);
  float s = reduce_sum(acc);
  for (; i < n; i++) s += x[i] * y[i];  // tail
  return s;
}

double dot_ref(const float* x, const float* y, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += static_cast<double>(x[i]) * y[i];
  return s;
}

float sum(const float* x, int64_t n) {
  int64_t i = 0;
  Vec acc = zero();
  for (; i + kLanes <= n; i += kLanes) acc = add(acc, load(x + i));
  float s = reduce_sum(acc);
  for (; i < n; i++) s += x[i];  // tail
  return s;
}

double sum_ref(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

}  // namespace ddpm

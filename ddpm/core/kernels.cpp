#include "ddpm/core/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ddpm/core/parallel.h"
#include "ddpm/core/simd.h"

namespace ddpm {

using namespace simd;

// ---------------------------------------------------------------------------
// SGEMM
//
// The microkernel computes one MR x NR tile T of C (MR rows, NR = NV vectors wide):
//   T[r][v] = (load_c ? T[r][v] : 0) + sum over k of P(r, k) * Q[k][v]
// P(r, k) is read in place from the operand when its rows or its k are contiguous
// (one broadcast per r and k), or from a packed copy; Q is packed k-major, NR floats
// per k, loaded as NV vectors. The tile lives in MR * NV vector registers for the
// whole K block.
//
// Orientation. C = op(A) op(B) is computed either as is (P = op(A), Q = op(B)^T,
// vectors along C's rows) or as C^T = op(B)^T op(A)^T (P = op(B)^T, Q = op(A), vectors
// along C's columns), whichever costs fewer estimated cycles: padded FMAs plus
// packing (a transposing pack of Q costs more than a copy). With M = 64, N = 576 and
// op(B) transposed (conv backward-weight) the vectors run along M; with N = 49 and
// op(A) not transposed they stay along N.
//
// Blocking. K is cut into KC-deep blocks; per K block a task packs its Q columns,
// NC at a time (a KC x NR micro-panel then stays in L1 while the MR-row panels of its
// task, at most MC rows, stream past it from L2).
//
// Determinism. Every C element is one FMA chain over k = 0, 1, ..., K-1 in order:
// its accumulator starts at 0 (or at C when accumulating) and between K blocks it is
// stored and loaded back unchanged. Tasks are disjoint C blocks, so how C is split
// never changes any element's arithmetic: results are bit-identical for any thread
// count (and any task split; the orientation depends on the shape only).

namespace {

#if defined(DDPM_SIMD_TARGET_AVX512)
constexpr int MR = 8, NV = 2;   // 16 accumulators of 32 zmm; 12 or 14 rows measured no faster
constexpr int64_t KC = 256;     // Q micro-panel 256 x 32 floats = 32 KB of the 48 KB L1
#elif defined(DDPM_SIMD_TARGET_AVX2)
constexpr int MR = 6, NV = 2;   // 12 accumulators + 2 Q vectors + 1 broadcast of 16 ymm
constexpr int64_t KC = 256;
#elif defined(DDPM_SIMD_TARGET_NEON)
constexpr int MR = 8, NV = 3;   // 24 accumulators of 32 q registers
constexpr int64_t KC = 256;
#else
constexpr int MR = 4, NV = 4;   // scalar: a 4 x 4 tile in 16 scalar registers
constexpr int64_t KC = 256;
#endif
constexpr int NR = NV * kLanes;
constexpr int64_t MC = 256;                // most rows per task (KC x MC x 4 B = 256 KB of L2)
// Q columns packed at once (KC x NC x 4 B = 512 KB): whole NR-wide panels, so a chunk
// never ends inside a panel (NR = 12 on NEON does not divide 512).
constexpr int64_t NC = 512 / NR * NR;
constexpr int64_t kSerialFlops = 1 << 21;  // below this a GEMM runs on the caller's thread

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// One operand seen as a (rows x K) matrix: element (i, k) = X[row(i) + col(k)], with
// row(i) = roff ? roff[i] : i * rs and col(k) = koff ? koff[k] : k * ks (a MatrixView's
// offset tables).
struct Operand {
  const float* X;
  int64_t rs, ks, rows;
  const int64_t* roff = nullptr;
  const int64_t* koff = nullptr;
  int64_t row(int64_t i) const { return roff ? roff[i] : i * rs; }
  int64_t col(int64_t k) const { return koff ? koff[k] : k * ks; }
  bool rows_contiguous() const { return !roff && rs == 1; }  // element (i, k) next to (i+1, k)
  // P can be read without packing: the microkernel takes one offset per row and a
  // stride along k (so rows may come from a table, but k may not).
  bool in_place() const { return !koff && (roff || rs == 1 || ks == 1); }
};

// Pack rows [i0, i0 + n) of X, depth [k0, k0 + kc), as ceil(n / W) panels of kc x W
// floats (dst[panel][k][w]); rows past n are zero.
template <int W>
void pack(float* dst, const Operand& X, int64_t i0, int64_t n, int64_t k0, int64_t kc) {
  const int64_t panels = (n + W - 1) / W;
  if (X.rows_contiguous()) {
    // Rows are contiguous: stream along each k's row, one W-wide run per panel.
    for (int64_t k = 0; k < kc; k++) {
      const float* s = X.X + i0 + X.col(k0 + k);
      for (int64_t p = 0; p < panels; p++) {
        float* d = dst + (p * kc + k) * W;
        const int64_t rows = std::min<int64_t>(W, n - p * W);
        if (rows == W) {
          for (int w = 0; w < W; w++) d[w] = s[p * W + w];
        } else {
          for (int64_t w = 0; w < rows; w++) d[w] = s[p * W + w];
          for (int64_t w = rows; w < W; w++) d[w] = 0.0f;  // padding
        }
      }
    }
    return;
  }
  // K is contiguous (X.ks == 1) or neither is: a transpose, in k blocks of 16 so the
  // destination block stays in L1 while W source rows stream in.
  for (int64_t p = 0; p < panels; p++) {
    const int64_t rows = std::min<int64_t>(W, n - p * W);
    float* d0 = dst + p * kc * W;
    for (int64_t kb = 0; kb < kc; kb += 16) {
      const int64_t kn = std::min<int64_t>(16, kc - kb);
      for (int64_t w = 0; w < rows; w++) {
        const float* s = X.X + X.row(i0 + p * W + w);
        float* d = d0 + kb * W + w;
        if (X.koff) {
          for (int64_t k = 0; k < kn; k++) d[k * W] = s[X.koff[k0 + kb + k]];
        } else {
          s += (k0 + kb) * X.ks;
          for (int64_t k = 0; k < kn; k++) d[k * W] = s[k * X.ks];
        }
      }
      for (int64_t w = rows; w < W; w++)
        for (int64_t k = 0; k < kn; k++) d0[(kb + k) * W + w] = 0.0f;  // padding
    }
  }
}

// T[r][v] = (load_c ? T[r][v] : 0) + sum over k < kc of P[prow[r] + k * pks] * Q[k * NR + v];
// T has row stride ldt.
void microkernel(int64_t kc, const float* P, const int64_t* prow, int64_t pks, const float* Q, float* T, int64_t ldt,
                 bool load_c) {
  int64_t row[MR];
  for (int r = 0; r < MR; r++) row[r] = prow[r];
  Vec c[MR][NV];
  // Start fetching C's lines now: the K loop hides the wait when C is cold.
  for (int r = 0; r < MR; r++) {
    prefetch(T + r * ldt);
    prefetch(T + r * ldt + NR - 1);
  }
  if (load_c) {
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < NV; v++) c[r][v] = load(T + r * ldt + v * kLanes);
  } else {
    for (int r = 0; r < MR; r++)
      for (int v = 0; v < NV; v++) c[r][v] = zero();
  }
  for (int64_t k = 0; k < kc; k++) {
    Vec q[NV];
    for (int v = 0; v < NV; v++) q[v] = load(Q + v * kLanes);
    for (int r = 0; r < MR; r++) {
      Vec a = broadcast(P + row[r]);
      for (int v = 0; v < NV; v++) c[r][v] = mul_add(a, q[v], c[r][v]);
    }
    P += pks;
    Q += NR;
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) store(T + r * ldt + v * kLanes, c[r][v]);
}

// The problem after orientation: C(r, v) = C[r * crs + v * ccs] over R x V rows and
// columns, (C +)= sum over k of P(r, k) Q(v, k).
struct Gemm {
  Operand P, Q;
  float* C;
  int64_t crs, ccs, K;
  bool accumulate;
};

// Scratch that lives as long as its thread, grown on demand, cache-line aligned.
struct Scratch {
  std::vector<float> buf;
  float* get(int64_t n) {
    const int64_t pad = 64 / sizeof(float);
    if (static_cast<int64_t>(buf.size()) < n + pad) buf.resize(n + pad);
    auto addr = reinterpret_cast<uintptr_t>(buf.data());
    return buf.data() + ((64 - addr % 64) % 64) / sizeof(float);
  }
};

// C block rows [r0, r1) x columns [v0, v1), every K block in order.
void run_block(const Gemm& g, int64_t r0, int64_t r1, int64_t v0, int64_t v1) {
  thread_local Scratch scratch;
  const int64_t rn = r1 - r0, vn = v1 - v0, r_panels = (rn + MR - 1) / MR;
  const int64_t kc_max = std::min(KC, g.K), nc_max = std::min(NC, round_up(vn, NR));
  // P in place where it can be (all but a short last panel), else packed per K block.
  const bool p_in_place = g.P.in_place();
  const int64_t p_packed_rows = p_in_place ? MR : r_panels * MR;
  // Vectors along C's columns (ccs != 1) accumulate in a row-major copy of the block,
  // written back once, instead of a strided copy per tile and K block. It is padded to
  // whole tiles (r_panels * MR rows of ldt), so every tile is written in full.
  const bool c_copy = g.ccs != 1;
  const int64_t ldt = round_up(vn, NR);
  float* Qp = scratch.get(nc_max * kc_max + p_packed_rows * kc_max + (c_copy ? r_panels * MR * ldt : 0));
  float* Pp = Qp + nc_max * kc_max;
  float* Ct = Pp + p_packed_rows * kc_max;
  // C's rows are this block's columns (crs == 1): walk C row by row, contiguously.
  if (c_copy && g.accumulate)
    for (int64_t j = 0; j < vn; j++)
      for (int64_t i = 0; i < rn; i++) Ct[i * ldt + j] = g.C[(r0 + i) * g.crs + (v0 + j) * g.ccs];
  alignas(64) float tile[MR * NR];
  for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
    const int64_t kc = std::min(KC, g.K - k0);
    const bool load_c = g.accumulate || k0 > 0;
    if (!p_in_place) {
      pack<MR>(Pp, g.P, r0, rn, k0, kc);
    } else if (rn % MR) {
      const int64_t last = (r_panels - 1) * MR;  // the short last panel, zero-padded
      pack<MR>(Pp, g.P, r0 + last, rn - last, k0, kc);
    }
    for (int64_t vc = v0; vc < v1; vc += NC) {
      const int64_t vcn = std::min(NC, v1 - vc);
      pack<NR>(Qp, g.Q, vc, vcn, k0, kc);
      for (int64_t jp = 0; jp * NR < vcn; jp++) {
        const float* Qpanel = Qp + jp * kc * NR;
        const int64_t v = vc + jp * NR, cols = std::min<int64_t>(NR, v1 - v);
        for (int64_t p = 0; p < r_panels; p++) {
          const int64_t r = r0 + p * MR, rows = std::min<int64_t>(MR, r1 - r);
          // Packed: row i of the panel at i, k at k * MR. In place: row i at g.P.row(r + i).
          const float* P = Pp + p * kc * MR;
          int64_t prow[MR], pks = MR;
          for (int i = 0; i < MR; i++) prow[i] = i;
          if (p_in_place && rows == MR) {
            P = g.P.X + g.P.col(k0);
            for (int i = 0; i < MR; i++) prow[i] = g.P.row(r + i);
            pks = g.P.ks;
          } else if (p_in_place) {
            P = Pp;
          }
          if (c_copy) {
            microkernel(kc, P, prow, pks, Qpanel, Ct + (r - r0) * ldt + (v - v0), ldt, load_c);
            continue;
          }
          float* c = g.C + r * g.crs + v;
          if (rows == MR && cols == NR) {
            microkernel(kc, P, prow, pks, Qpanel, c, g.crs, load_c);
            continue;
          }
          // An edge tile: through a buffer.
          if (load_c)
            for (int64_t i = 0; i < rows; i++)
              for (int64_t j = 0; j < cols; j++) tile[i * NR + j] = c[i * g.crs + j];
          microkernel(kc, P, prow, pks, Qpanel, tile, NR, load_c);
          for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) c[i * g.crs + j] = tile[i * NR + j];
        }
      }
    }
  }
  if (c_copy)
    for (int64_t j = 0; j < vn; j++)
      for (int64_t i = 0; i < rn; i++) g.C[(r0 + i) * g.crs + (v0 + j) * g.ccs] = Ct[i * ldt + j];
}

// Estimated cycles of one orientation: padded FMAs (two per cycle), plus packing Q
// once per row block (a copy when its rows are contiguous, else a transpose at about
// a cycle per float), plus packing P when it cannot be read in place.
double estimated_cycles(const Operand& P, const Operand& Q, int64_t K) {
  const double R = round_up(P.rows, MR), V = round_up(Q.rows, NR);
  const double fma = R * V * K / (2.0 * kLanes);
  const double q_pack = V * K * (Q.rows_contiguous() ? 0.25 : 1.0) * std::ceil(R / MC);
  const double p_pack = P.in_place() ? 0.0 : R * K * std::ceil(V / NC);
  return fma + q_pack + p_pack;
}

}  // namespace

// A as (M x K) rows and B^T as (N x K) rows for views A [M, K] and B [K, N].
void sgemm_view(int64_t M, int64_t N, int64_t K, const MatrixView& A, const MatrixView& B, float* C, int64_t ldc,
                bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, N * sizeof(float));
    return;
  }
  const Operand a{A.data, A.row_stride, A.col_stride, M, A.row_offsets, A.col_offsets};
  const Operand bt{B.data, B.col_stride, B.row_stride, N, B.col_offsets, B.row_offsets};
  const bool transposed = estimated_cycles(bt, a, K) < estimated_cycles(a, bt, K);
  const Gemm g = transposed ? Gemm{bt, a, C, 1, ldc, K, accumulate} : Gemm{a, bt, C, ldc, 1, K, accumulate};
  const int64_t R = g.P.rows, V = g.Q.rows;

  // Tasks: row blocks of at most MC rows times column blocks. Splitting columns costs
  // nothing extra (P is shared, each task packs only its own Q), so threads split
  // columns; rows only when there are too few column panels. Block edges fall on
  // panel edges. The transposed orientation also caps a block's columns (its C copy).
  const int64_t r_panels = (R + MR - 1) / MR, v_panels = (V + NR - 1) / NR;
  int64_t r_blocks = (r_panels * MR + MC - 1) / MC;
  int64_t v_blocks = transposed ? (v_panels * NR + 1023) / 1024 : 1;
  const int threads = 2.0 * M * N * K < kSerialFlops ? 1 : num_threads();
  if (threads > 1) {
    if (v_panels >= threads)
      v_blocks = round_up(std::max<int64_t>(v_blocks, threads), threads);
    else
      r_blocks = std::min(r_panels, round_up(std::max<int64_t>(r_blocks, threads), threads));
  }
  v_blocks = std::min(v_blocks, v_panels);
  auto task = [&](int64_t t) {
    const int64_t bi = t / v_blocks, bj = t % v_blocks;
    const int64_t r0 = std::min(R, r_panels * bi / r_blocks * MR), r1 = std::min(R, r_panels * (bi + 1) / r_blocks * MR);
    const int64_t v0 = std::min(V, v_panels * bj / v_blocks * NR), v1 = std::min(V, v_panels * (bj + 1) / v_blocks * NR);
    if (r0 < r1 && v0 < v1) run_block(g, r0, r1, v0, v1);
  };
  const int64_t tasks = r_blocks * v_blocks;
  if (threads == 1) {
    for (int64_t t = 0; t < tasks; t++) task(t);
  } else {
    parallel_for(tasks, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) task(t);
    });
  }
}

// op(A) [M, K] and op(B) [K, N] as views: a transpose swaps the strides.
static MatrixView strided_view(bool trans, const float* X, int64_t ld) {
  return trans ? MatrixView{X, 1, ld} : MatrixView{X, ld, 1};
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  sgemm_view(M, N, K, strided_view(trans_a, A, lda), strided_view(trans_b, B, ldb), C, ldc, accumulate);
}

void sgemm_view_ref(int64_t M, int64_t N, int64_t K, const MatrixView& A, const MatrixView& B, float* C, int64_t ldc,
                    bool accumulate) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = accumulate ? C[i * ldc + j] : 0.0;
      for (int64_t k = 0; k < K; k++) acc += static_cast<double>(A.at(i, k)) * B.at(k, j);
      C[i * ldc + j] = static_cast<float>(acc);
    }
}

void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  sgemm_view_ref(M, N, K, strided_view(trans_a, A, lda), strided_view(trans_b, B, ldb), C, ldc, accumulate);
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

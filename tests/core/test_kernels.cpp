// Every SIMD kernel against its plain-loop twin, at lengths 0, 1, lanes-1, lanes,
// lanes+1 and large.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/simd.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

static std::vector<int64_t> awkward_lengths() {
  const int64_t L = simd::kLanes;
  return {0, 1, L > 1 ? L - 1 : 2, L, L + 1, 2 * L + 3, 1000, 4099};
}

TEST_CASE("kernels: axpy, dot and sum match their twins at awkward lengths") {
  for (int64_t n : awkward_lengths()) {
    CAPTURE(n);
    Tensor x = randn({n}, 1), y = randn({n}, 2);
    Tensor y1 = y.clone(), y2 = y.clone();
    axpy(y1.data(), 0.37f, x.data(), n);
    axpy_ref(y2.data(), 0.37f, x.data(), n);
    // axpy may fuse the multiply-add: one rounding instead of two, within 1 ulp.
    testing::check_allclose("axpy", y1.data(), y2.data(), n, 1e-6, 1e-6);
    // Sums in a different order: rounding error grows like sqrt(n) ulps of the terms.
    CHECK(std::fabs(dot(x.data(), y.data(), n) - dot_ref(x.data(), y.data(), n)) <= 1e-5 * (1 + n));
    CHECK(std::fabs(sum(x.data(), n) - sum_ref(x.data(), n)) <= 1e-5 * (1 + n));
  }
}

TEST_CASE("kernels: sgemm matches sgemm_ref for every transpose, odd sizes and accumulate") {
  const int64_t L = simd::kLanes;
  const std::vector<int64_t> sizes = {1, 5, L - 1 > 0 ? L - 1 : 2, 2 * L + 1, 37};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : {int64_t(0), int64_t(1), int64_t(7), int64_t(300)})
            for (bool acc : {false, true}) {
              CAPTURE(ta);
              CAPTURE(tb);
              CAPTURE(M);
              CAPTURE(N);
              CAPTURE(K);
              CAPTURE(acc);
              Tensor A = randn({M * K + 1}, 3), B = randn({K * N + 1}, 4);
              const int64_t ldc = N + 3;  // a row stride wider than N
              Tensor C = randn({M * ldc}, 5);
              Tensor C_ref = C.clone();
              const int64_t lda = ta ? M : K, ldb = tb ? K : N;
              sgemm(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, acc);
              sgemm_ref(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, C_ref.data(), ldc, acc);
              // float32 sums of K products of N(0,1) values: error ~ sqrt(K) * 6e-8 * sqrt(K).
              REQUIRE(testing::allclose("sgemm", C.data(), C_ref.data(), M * ldc, 1e-4 * (1 + K / 50.0), 1e-4));
            }
}

TEST_CASE("kernels: sgemm is bit-identical at 1, 2 and 3 threads") {
  Tensor A = randn({130 * 600}, 6), B = randn({600 * 77}, 7);
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tensor C({130 * 77});
    sgemm(false, false, 130, 77, 600, A.data(), 600, B.data(), 77, C.data(), 77, false);
    if (first.empty()) first = C.to_vector();
    CHECK(C.to_vector() == first);
  }
  set_num_threads(1);
}

TEST_CASE("kernels: simd::exp is within 2e-7 relative of double exp, and clamps out of range") {
  using namespace simd;
  double worst = 0.0;
  float in[kLanes], out[kLanes];
  for (double x0 = -87.3; x0 <= 88.3; x0 += 0.0123) {
    for (int l = 0; l < kLanes; l++) in[l] = static_cast<float>(x0 + 1e-3 * l);
    store(out, simd::exp(load(in)));
    for (int l = 0; l < kLanes; l++) {
      const double want = std::exp(static_cast<double>(in[l]));
      worst = std::max(worst, std::fabs(out[l] - want) / want);
    }
  }
  // The bound simd.h documents (the Cephes polynomial measures about 1 ulp, 1.19e-7).
  CHECK(worst < 2e-7);
  // Out of range: clamped to the extreme finite results, never 0, inf or a denormal.
  for (int l = 0; l < kLanes; l++) in[l] = (l % 2) ? 1000.0f : -1000.0f;
  store(out, simd::exp(load(in)));
  for (int l = 0; l < kLanes; l++) {
    CHECK(std::isfinite(out[l]));
    CHECK(std::fpclassify(out[l]) == FP_NORMAL);
  }
}

// Shapes that straddle the blocking of every target (MR 4/6/8, NR 4/12/16/32, KC 256,
// MC 256): one less, equal and one more than the block, a K of one or several KC
// blocks, N = 49 (7x7 images), M > MC, and the wide-K conv backward-weight form.
TEST_CASE("kernels: sgemm matches sgemm_ref at sizes straddling the blocking") {
  struct Case {
    int64_t M, N, K;
  };
  const std::vector<Case> cases = {{7, 31, 255}, {8, 32, 256}, {9, 33, 257}, {17, 49, 513}, {64, 49, 300},
                                   {263, 13, 20}, {6, 100, 1},   {33, 65, 769}, {49, 64, 40},  {12, 580, 600}};
  for (const Case& c : cases)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool acc : {false, true}) {
          CAPTURE(c.M);
          CAPTURE(c.N);
          CAPTURE(c.K);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(acc);
          // Leading dimensions wider than the rows, so strides are exercised.
          const int64_t lda = (ta ? c.M : c.K) + 2, ldb = (tb ? c.K : c.N) + 1, ldc = c.N + 5;
          Tensor A = randn({(ta ? c.K : c.M) * lda}, 21), B = randn({(tb ? c.N : c.K) * ldb}, 22);
          Tensor C = randn({c.M * ldc}, 23), C_ref = C.clone();
          sgemm(ta, tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, C.data(), ldc, acc);
          sgemm_ref(ta, tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, C_ref.data(), ldc, acc);
          // float32 FMA chain of K products of N(0,1) values vs a double sum: error grows
          // like sqrt(K) ulps of sqrt(K)-sized sums; 1e-4 * (1 + K/50) leaves a margin.
          REQUIRE(testing::allclose("sgemm", C.data(), C_ref.data(), c.M * ldc, 1e-4 * (1 + c.K / 50.0), 1e-4));
        }
}

TEST_CASE("kernels: sgemm is bit-identical at 1, 2 and 3 threads for every split and orientation") {
  struct Case {
    bool ta, tb;
    int64_t M, N, K;
  };
  // Column-split, transposed orientation (conv backward-weight), row split (N one
  // panel), several row blocks (M > 256), and a tiny one below the threading threshold.
  const std::vector<Case> cases = {{false, false, 64, 784, 300}, {false, true, 64, 576, 1500},
                                   {true, false, 600, 20, 64},   {false, false, 300, 49, 260},
                                   {true, true, 5, 7, 3}};
  for (const Case& c : cases)
    for (bool acc : {false, true}) {
      CAPTURE(c.M);
      CAPTURE(c.N);
      CAPTURE(c.K);
      CAPTURE(acc);
      const int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
      Tensor A = randn({c.M * c.K}, 31), B = randn({c.K * c.N}, 32), C0 = randn({c.M * c.N}, 33);
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        set_num_threads(threads);
        Tensor C = C0.clone();
        sgemm(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, C.data(), c.N, acc);
        if (first.empty()) first = C.to_vector();
        CHECK(C.to_vector() == first);
      }
      set_num_threads(1);
    }
}

TEST_CASE("kernels: sgemm_view with offset tables matches sgemm_view_ref, at 1, 2 and 3 threads") {
  // B [K, N] read from a buffer through a row-offset table (the implicit im2col matrix
  // of ops/conv: rows at shifted offsets into one plane), and A [M, K] through a
  // column-offset table; each in both operand roles (M and N large enough that either
  // orientation and the packed P path are taken).
  struct Case {
    int64_t M, N, K;
  };
  for (Case c : {Case{37, 300, 45}, Case{300, 40, 45}, Case{64, 784, 288}, Case{3, 5, 7}}) {
    CAPTURE(c.M);
    CAPTURE(c.N);
    CAPTURE(c.K);
    Tensor plane = randn({c.K * 3 + c.N + 8}, 41), Abuf = randn({c.M * c.K * 2 + 8}, 42);
    std::vector<int64_t> b_rows(c.K), a_cols(c.K);
    for (int64_t k = 0; k < c.K; k++) {
      b_rows[k] = (k * 7) % (c.K * 3);  // overlapping, out-of-order rows
      a_cols[k] = (c.K - 1 - k) * 2;    // reversed, stride 2
    }
    const MatrixView A{Abuf.data(), 2 * c.K, 1, nullptr, a_cols.data()};
    const MatrixView B{plane.data(), 0, 1, b_rows.data(), nullptr};
    // The transposed roles: C^T [N, M] = B^T A^T, with the tables on the other axis.
    const MatrixView Bt{plane.data(), 1, 0, nullptr, b_rows.data()};
    const MatrixView At{Abuf.data(), 1, 2 * c.K, a_cols.data(), nullptr};
    // Row tables on A, column tables on B, k contiguous in both (ops/conv's
    // backward-weight): A(i, k) = Abuf[a_rows[i] + k], B(k, j) = plane[k + b_cols[j]].
    std::vector<int64_t> a_rows(c.M), b_cols(c.N);
    for (int64_t i = 0; i < c.M; i++) a_rows[i] = (i * 5) % (c.M * c.K + 8 - c.K);
    for (int64_t j = 0; j < c.N; j++) b_cols[j] = (j * 3) % (c.K * 3 + c.N + 8 - c.K);
    const MatrixView Ar{Abuf.data(), 0, 1, a_rows.data(), nullptr};
    const MatrixView Bc{plane.data(), 1, 0, nullptr, b_cols.data()};
    for (bool acc : {false, true}) {
      CAPTURE(acc);
      Tensor C0 = randn({c.M * c.N}, 43), Ct0 = randn({c.N * c.M}, 44);
      Tensor C_ref = C0.clone(), Ct_ref = Ct0.clone(), Cr_ref = C0.clone();
      sgemm_view_ref(c.M, c.N, c.K, A, B, C_ref.data(), c.N, acc);
      sgemm_view_ref(c.N, c.M, c.K, Bt, At, Ct_ref.data(), c.M, acc);
      sgemm_view_ref(c.M, c.N, c.K, Ar, Bc, Cr_ref.data(), c.N, acc);
      std::vector<float> first, first_t, first_r;
      for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        set_num_threads(threads);
        Tensor C = C0.clone(), Ct = Ct0.clone(), Cr = C0.clone();
        sgemm_view(c.M, c.N, c.K, A, B, C.data(), c.N, acc);
        sgemm_view(c.N, c.M, c.K, Bt, At, Ct.data(), c.M, acc);
        sgemm_view(c.M, c.N, c.K, Ar, Bc, Cr.data(), c.N, acc);
        REQUIRE(testing::allclose("sgemm_view rows", Cr.data(), Cr_ref.data(), c.M * c.N, 1e-4 * (1 + c.K / 50.0),
                                  1e-4));
        // Float sums of K products against double: as for sgemm above.
        REQUIRE(testing::allclose("sgemm_view", C.data(), C_ref.data(), c.M * c.N, 1e-4 * (1 + c.K / 50.0), 1e-4));
        REQUIRE(testing::allclose("sgemm_view^T", Ct.data(), Ct_ref.data(), c.N * c.M, 1e-4 * (1 + c.K / 50.0), 1e-4));
        if (first.empty()) {
          first = C.to_vector();
          first_t = Ct.to_vector();
          first_r = Cr.to_vector();
        }
        CHECK(C.to_vector() == first);
        CHECK(Ct.to_vector() == first_t);
        CHECK(Cr.to_vector() == first_r);
      }
      set_num_threads(1);
    }
  }
}

TEST_CASE("kernels: sgemm with a short last row panel and more columns than one packed chunk") {
  // M not a multiple of any MR (so the last P panel is packed beside the packed Q) and
  // N past 512 columns (several Q chunks): on NEON (NR = 12) a chunk of 512 columns
  // used to end inside a panel, and packing it overran into the P panel.
  for (int64_t M : {3, 9, 13})
    for (int64_t N : {511, 512, 520, 840}) {
      CAPTURE(M);
      CAPTURE(N);
      const int64_t K = 9;
      Tensor A = randn({M * K}, 51), B = randn({K * N}, 52), C({M * N}), C_ref({M * N});
      sgemm(false, false, M, N, K, A.data(), K, B.data(), N, C.data(), N, false);
      sgemm_ref(false, false, M, N, K, A.data(), K, B.data(), N, C_ref.data(), N, false);
      // Sums of 9 products: float against double, a few ulps.
      REQUIRE(testing::allclose("sgemm", C.data(), C_ref.data(), M * N, 1e-5, 1e-5));
    }
}

TEST_CASE("simd: load_first and store_first touch lanes [0, n) only, for n = 0..kLanes") {
  using namespace simd;
  for (int n = 0; n <= kLanes; n++) {
    CAPTURE(n);
    std::vector<float> src(kLanes), dst(2 * kLanes, -7.0f), lanes(kLanes);
    for (int i = 0; i < kLanes; i++) src[i] = 1.0f + i;
    // load_first: lanes < n from memory, the rest 0; reads nothing past src + n.
    store(lanes.data(), load_first(src.data(), n));
    for (int i = 0; i < kLanes; i++) CHECK(lanes[i] == (i < n ? src[i] : 0.0f));
    // store_first: writes dst[0, n), leaves the rest alone.
    store_first(dst.data(), load(src.data()), n);
    for (int i = 0; i < 2 * kLanes; i++) CHECK(dst[i] == (i < n ? src[i] : -7.0f));
  }
}

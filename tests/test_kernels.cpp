// Every SIMD kernel against its plain-loop twin, at lengths 0, 1, lanes-1, lanes,
// lanes+1 and large.
#include <vector>

#include "ddpm/kernels.h"
#include "ddpm/parallel.h"
#include "ddpm/simd.h"
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

#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/eval/linalg.h"
#include "tests/fixtures/frechet_reference.h"
#include "tests/testing.h"

using namespace ddpm;

namespace {

// A random symmetric matrix Q diag(w) Q^T with the given eigenvalues (Q orthonormal
// from Gram-Schmidt on GaussianStats columns), so the answer is known.
std::vector<double> with_eigenvalues(const std::vector<double>& w, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(w.size());
  std::vector<double> Q(n * n);
  for (int64_t i = 0; i < n * n; i++) Q[i] = normal(RngKey{seed, 1}, i);
  for (int64_t k = 0; k < n; k++) {  // columns, modified Gram-Schmidt
    for (int64_t j = 0; j < k; j++) {
      double d = 0;
      for (int64_t i = 0; i < n; i++) d += Q[i * n + k] * Q[i * n + j];
      for (int64_t i = 0; i < n; i++) Q[i * n + k] -= d * Q[i * n + j];
    }
    double norm = 0;
    for (int64_t i = 0; i < n; i++) norm += Q[i * n + k] * Q[i * n + k];
    for (int64_t i = 0; i < n; i++) Q[i * n + k] /= std::sqrt(norm);
  }
  std::vector<double> A(n * n, 0.0);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++)
      for (int64_t k = 0; k < n; k++) A[i * n + j] += Q[i * n + k] * w[k] * Q[j * n + k];
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < i; j++) A[i * n + j] = A[j * n + i];
  return A;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

GaussianStats diagonal_gaussian(const std::vector<double>& mean, const std::vector<double>& var) {
  GaussianStats g;
  g.D = static_cast<int64_t>(mean.size());
  g.mean = mean;
  g.cov.assign(g.D * g.D, 0.0);
  for (int64_t d = 0; d < g.D; d++) g.cov[d * g.D + d] = var[d];
  return g;
}

}  // namespace

TEST_CASE("linalg: eigh reconstructs A = V diag(w) V^T with V orthonormal") {
  for (int64_t n : {1, 2, 3, 7, 16, 40}) {
    CAPTURE(n);
    std::vector<double> A(n * n);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j <= i; j++) A[i * n + j] = A[j * n + i] = normal(RngKey{5, 2}, i * n + j);
    const SymmetricEigen e = eigh(A, n);
    std::vector<double> VwVt(n * n, 0.0), VtV(n * n, 0.0), I(n * n, 0.0);
    for (int64_t i = 0; i < n; i++) {
      I[i * n + i] = 1.0;
      for (int64_t j = 0; j < n; j++)
        for (int64_t k = 0; k < n; k++) {
          VwVt[i * n + j] += e.V[i * n + k] * e.w[k] * e.V[j * n + k];
          VtV[i * n + j] += e.V[k * n + i] * e.V[k * n + j];
        }
    }
    // Entries are O(1) and n <= 40: double rounding over ~n^2 rotations stays below 1e-12.
    CHECK(max_abs_diff(VwVt, A) < 1e-12);
    CHECK(max_abs_diff(VtV, I) < 1e-12);
    for (int64_t k = 1; k < n; k++) CHECK(e.w[k - 1] <= e.w[k]);
  }
}

TEST_CASE("linalg: eigh finds known eigenvalues, including repeated ones") {
  const std::vector<std::vector<double>> cases = {
      {1.0, 1.0, 1.0, 1.0},                      // A = I after rotation: fully degenerate
      {-2.0, 0.0, 0.0, 3.0, 3.0, 3.0, 10.0},     // a zero and a triple eigenvalue
      {1e-8, 1e-8, 1.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0, 9.0},
  };
  for (const auto& w : cases) {
    const int64_t n = static_cast<int64_t>(w.size());
    const std::vector<double> A = with_eigenvalues(w, 11 + n);
    const SymmetricEigen e = eigh(A, n);
    // Eigenvalues of a well-conditioned O(10) matrix: accurate to ~1e-14 relative.
    CHECK(max_abs_diff(e.w, w) < 1e-12);
    std::vector<double> VwVt(n * n, 0.0);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++)
        for (int64_t k = 0; k < n; k++) VwVt[i * n + j] += e.V[i * n + k] * e.w[k] * e.V[j * n + k];
    CHECK(max_abs_diff(VwVt, A) < 1e-12);
  }
}

TEST_CASE("linalg: sqrtm_psd squared equals A") {
  for (int64_t n : {1, 5, 24}) {
    std::vector<double> w(n);
    for (int64_t k = 0; k < n; k++) w[k] = (k % 3 == 0) ? 0.0 : 0.5 + k;  // PSD with a null space
    const std::vector<double> A = with_eigenvalues(w, 3 + n);
    const std::vector<double> R = sqrtm_psd(A, n);
    // Largest eigenvalue ~24: the square reproduces A to ~1e-13 absolute.
    CHECK(max_abs_diff(matmul(R, R, n, n, n), A) < 1e-11);
    // The root is symmetric.
    std::vector<double> Rt(n * n);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) Rt[i * n + j] = R[j * n + i];
    CHECK(max_abs_diff(R, Rt) < 1e-12);
  }
}

TEST_CASE("linalg: eigh rejects a non-symmetric or wrongly sized matrix") {
  CHECK_THROWS_AS(eigh({1, 2, 3, 4}, 2), Error);
  CHECK_THROWS_AS(eigh({1, 2, 3}, 2), Error);
}

TEST_CASE("linalg: fit_gaussian matches the textbook mean and unbiased covariance") {
  // Rows (1, 2), (3, 6), (5, 4): mean (3, 4); deviations (-2,-2), (0,2), (2,0);
  // cov = 1/2 [[8, 4], [4, 8]] = [[4, 2], [2, 4]].
  const float X[] = {1, 2, 3, 6, 5, 4};
  const GaussianStats g = fit_gaussian(X, 3, 2);
  CHECK(max_abs_diff(g.mean, {3, 4}) < 1e-12);  // exact in double
  CHECK(max_abs_diff(g.cov, {4, 2, 2, 4}) < 1e-12);
  CHECK_THROWS_AS(fit_gaussian(X, 1, 2), Error);
}

TEST_CASE("linalg: Frechet distance of identical sets is 0, of shifted sets is ||shift||^2") {
  const int64_t N = 200, D = 16;
  std::vector<float> X(N * D), Y(N * D);
  std::vector<double> shift(D);
  double shift2 = 0;
  for (int64_t d = 0; d < D; d++) {
    shift[d] = 0.25 * (d % 5) - 0.5;
    shift2 += shift[d] * shift[d];
  }
  for (int64_t i = 0; i < N; i++)
    for (int64_t d = 0; d < D; d++) {
      // Correlated features: x_d = z_d + 0.5 z_{d+1}.
      X[i * D + d] = normal(RngKey{9, 3}, i * (D + 1) + d) + 0.5f * normal(RngKey{9, 3}, i * (D + 1) + d + 1);
      Y[i * D + d] = static_cast<float>(X[i * D + d] + shift[d]);
    }
  const GaussianStats gx = fit_gaussian(X.data(), N, D);
  const GaussianStats gy = fit_gaussian(Y.data(), N, D);
  // Traces are ~20; the sqrt-of-eigenvalue route loses ~sqrt(eps) only at exactly zero
  // eigenvalues, which a full-rank covariance has none of: 1e-8 absolute.
  CHECK(std::fabs(frechet_distance(gx, gx)) < 1e-8);
  // Y is X shifted (the float rounding of the shift changes the covariance by ~1e-7).
  CHECK(frechet_distance(gx, gy) == doctest::Approx(shift2).epsilon(1e-5));
}

TEST_CASE("linalg: Frechet distance of diagonal Gaussians is the closed form") {
  // FD = ||mu_a - mu_b||^2 + sum_d (sqrt(a_d) - sqrt(b_d))^2 when both covariances are diagonal.
  const std::vector<double> mean_a = {0, 1, 2, 3}, mean_b = {1, 1, 0, 3};
  const std::vector<double> var_a = {1, 4, 0.25, 9}, var_b = {4, 1, 0.25, 2};
  double want = 1 + 4;
  for (int d = 0; d < 4; d++) want += std::pow(std::sqrt(var_a[d]) - std::sqrt(var_b[d]), 2);
  const double got = frechet_distance(diagonal_gaussian(mean_a, var_a), diagonal_gaussian(mean_b, var_b));
  CHECK(got == doctest::Approx(want).epsilon(1e-12));  // O(10) values, a few double roundings
  // Symmetric in its arguments.
  CHECK(frechet_distance(diagonal_gaussian(mean_b, var_b), diagonal_gaussian(mean_a, var_a)) ==
        doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("linalg: Frechet distance with non-commuting covariances matches scipy's sqrtm(S_a S_b)") {
  // The cases above have commuting covariances, where tr((S_a S_b)^{1/2}) equals
  // tr(sqrt(S_a) sqrt(S_b)); here they do not commute, so only the right cross term passes.
  // Inputs and value: tests/fixtures/frechet_reference.py (numpy/scipy in float64, checked
  // against mpmath at 50 digits).
  namespace ref = frechet_reference;
  GaussianStats a, b;
  a.D = b.D = ref::kD;
  a.mean.assign(ref::kMeanA, ref::kMeanA + ref::kD);
  b.mean.assign(ref::kMeanB, ref::kMeanB + ref::kD);
  a.cov.assign(ref::kCovA, ref::kCovA + ref::kD * ref::kD);
  b.cov.assign(ref::kCovB, ref::kCovB + ref::kD * ref::kD);
  // Eigenvalues of O(1) well-conditioned 6 x 6 matrices: both routes are accurate to ~1e-14
  // relative; 1e-11 leaves room and is 1e8 times smaller than the bug's error (0.5%).
  CHECK(frechet_distance(a, b) == doctest::Approx(ref::kFrechet).epsilon(1e-11));
  CHECK(frechet_distance(b, a) == doctest::Approx(ref::kFrechet).epsilon(1e-11));
  CHECK(std::fabs(ref::kFrechetWithBug - ref::kFrechet) > 1e-3 * ref::kFrechet);  // the fixture tells them apart
}

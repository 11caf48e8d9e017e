#include "ddpm/eval/linalg.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ddpm/core/check.h"

namespace ddpm {

std::vector<double> matmul(const std::vector<double>& A, const std::vector<double>& B, int64_t n, int64_t k,
                           int64_t m) {
  DDPM_CHECK(static_cast<int64_t>(A.size()) == n * k && static_cast<int64_t>(B.size()) == k * m,
             "matmul: A has " << A.size() << " values, B " << B.size() << ", expected [" << n << ", " << k
                              << "] and [" << k << ", " << m << "]");
  std::vector<double> C(n * m, 0.0);
  for (int64_t i = 0; i < n; i++)
    for (int64_t l = 0; l < k; l++) {
      const double a = A[i * k + l];
      for (int64_t j = 0; j < m; j++) C[i * m + j] += a * B[l * m + j];
    }
  return C;
}

static void check_symmetric(const std::vector<double>& A, int64_t n) {
  DDPM_CHECK(n >= 0 && static_cast<int64_t>(A.size()) == n * n,
             "eigh: A has " << A.size() << " values, expected n * n with n = " << n);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < i; j++) {
      const double x = A[i * n + j], y = A[j * n + i];
      DDPM_CHECK(std::isfinite(x) && std::fabs(x - y) <= 1e-9 * (std::fabs(x) + std::fabs(y)) + 1e-300,
                 "eigh: A is not symmetric (or not finite): A[" << i << ", " << j << "] = " << x << " but A[" << j
                                                                << ", " << i << "] = " << y);
    }
}

// One Jacobi rotation in the (p, q) plane that zeroes A[p, q] (a_pq != 0), applied to A
// from both sides and to V from the right.
static void jacobi_rotate(std::vector<double>& A, std::vector<double>& V, int64_t n, int64_t p, int64_t q) {
  const double a_pq = A[p * n + q];
  // The rotation J (J_pp = J_qq = c, J_pq = s, J_qp = -s) makes (J^T A J)_pq =
  // cs (a_pp - a_qq) + (c^2 - s^2) a_pq vanish: with t = s / c,
  // t^2 + 2 theta t - 1 = 0, theta = (a_qq - a_pp) / (2 a_pq); take the smaller
  // root, so the rotation angle is at most pi/4 (this is what makes Jacobi converge).
  const double theta = (A[q * n + q] - A[p * n + p]) / (2.0 * a_pq);
  const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
  const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
  // A <- A J (columns p and q), then A <- J^T A (rows p and q), V <- V J.
  for (int64_t k = 0; k < n; k++) {
    const double a_kp = A[k * n + p], a_kq = A[k * n + q];
    A[k * n + p] = c * a_kp - s * a_kq;
    A[k * n + q] = s * a_kp + c * a_kq;
  }
  for (int64_t k = 0; k < n; k++) {
    const double a_pk = A[p * n + k], a_qk = A[q * n + k];
    A[p * n + k] = c * a_pk - s * a_qk;
    A[q * n + k] = s * a_pk + c * a_qk;
  }
  A[p * n + q] = A[q * n + p] = 0.0;  // zero by construction; drop the rounding
  for (int64_t k = 0; k < n; k++) {
    const double v_kp = V[k * n + p], v_kq = V[k * n + q];
    V[k * n + p] = c * v_kp - s * v_kq;
    V[k * n + q] = s * v_kp + c * v_kq;
  }
}

// The diagonal of the rotated A as eigenvalues, ascending, with V's columns carried along.
static SymmetricEigen sorted_eigen(const std::vector<double>& A, const std::vector<double>& V, int64_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return A[a * n + a] < A[b * n + b]; });
  SymmetricEigen e;
  e.w.resize(n);
  e.V.resize(n * n);
  for (int64_t k = 0; k < n; k++) {
    e.w[k] = A[order[k] * n + order[k]];
    for (int64_t i = 0; i < n; i++) e.V[i * n + k] = V[i * n + order[k]];
  }
  return e;
}

SymmetricEigen eigh(const std::vector<double>& A_in, int64_t n) {
  check_symmetric(A_in, n);
  std::vector<double> A = A_in;
  std::vector<double> V(n * n, 0.0);
  for (int64_t i = 0; i < n; i++) V[i * n + i] = 1.0;

  auto off_diagonal = [&]() {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++)
        if (i != j) s += A[i * n + j] * A[i * n + j];
    return s;
  };
  double total = 0.0;
  for (double a : A) total += a * a;

  // Cyclic Jacobi: sweep over every pair (p, q) above the diagonal until A is diagonal.
  for (int sweep = 0; sweep < 100; sweep++) {
    // Converged once the off-diagonal mass is at rounding level of the whole matrix.
    if (off_diagonal() <= 1e-30 * total) break;
    for (int64_t p = 0; p < n - 1; p++)
      for (int64_t q = p + 1; q < n; q++)
        if (A[p * n + q] != 0.0) jacobi_rotate(A, V, n, p, q);
  }
  return sorted_eigen(A, V, n);
}

std::vector<double> sqrtm_psd(const std::vector<double>& A, int64_t n) {
  const SymmetricEigen e = eigh(A, n);
  // sqrt(A) = V diag(sqrt(w)) V^T
  std::vector<double> out(n * n, 0.0);
  for (int64_t k = 0; k < n; k++) {
    const double r = std::sqrt(std::max(e.w[k], 0.0));
    if (r == 0.0) continue;
    for (int64_t i = 0; i < n; i++) {
      const double vi = r * e.V[i * n + k];
      for (int64_t j = 0; j < n; j++) out[i * n + j] += vi * e.V[j * n + k];
    }
  }
  return out;
}

GaussianStats fit_gaussian(const float* X, int64_t N, int64_t D) {
  DDPM_CHECK(N >= 2 && D >= 1, "fit_gaussian: needs at least 2 rows and 1 column, got X [" << N << ", " << D << "]");
  GaussianStats g;
  g.D = D;
  g.mean.assign(D, 0.0);
  g.cov.assign(D * D, 0.0);
  // mu = (1/N) sum_i x_i
  for (int64_t i = 0; i < N; i++)
    for (int64_t d = 0; d < D; d++) g.mean[d] += X[i * D + d];
  for (int64_t d = 0; d < D; d++) g.mean[d] /= static_cast<double>(N);
  // S = 1/(N - 1) sum_i (x_i - mu)(x_i - mu)^T, upper triangle then mirrored
  std::vector<double> centered(D);
  for (int64_t i = 0; i < N; i++) {
    for (int64_t d = 0; d < D; d++) centered[d] = X[i * D + d] - g.mean[d];
    for (int64_t a = 0; a < D; a++) {
      const double ca = centered[a];
      for (int64_t b = a; b < D; b++) g.cov[a * D + b] += ca * centered[b];
    }
  }
  for (int64_t a = 0; a < D; a++)
    for (int64_t b = a; b < D; b++) {
      g.cov[a * D + b] /= static_cast<double>(N - 1);
      g.cov[b * D + a] = g.cov[a * D + b];
    }
  return g;
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  DDPM_CHECK(a.D == b.D && a.D > 0, "frechet_distance: Gaussians of dimension " << a.D << " and " << b.D);
  const int64_t D = a.D;
  double mean_term = 0.0;  // ||mu_a - mu_b||^2
  for (int64_t d = 0; d < D; d++) mean_term += (a.mean[d] - b.mean[d]) * (a.mean[d] - b.mean[d]);
  double trace_a = 0.0, trace_b = 0.0;
  for (int64_t d = 0; d < D; d++) {
    trace_a += a.cov[d * D + d];
    trace_b += b.cov[d * D + d];
  }
  // M = sqrt(S_a) S_b sqrt(S_a) is symmetric PSD and similar to S_a S_b, so
  // tr((S_a S_b)^{1/2}) = tr(sqrt(M)) = sum_k sqrt(eig_k(M)).
  const std::vector<double> root_a = sqrtm_psd(a.cov, D);
  std::vector<double> M = matmul(matmul(root_a, b.cov, D, D, D), root_a, D, D, D);
  for (int64_t i = 0; i < D; i++)
    for (int64_t j = 0; j < i; j++) M[i * D + j] = M[j * D + i] = 0.5 * (M[i * D + j] + M[j * D + i]);
  const SymmetricEigen e = eigh(M, D);
  double trace_sqrt = 0.0;
  for (double w : e.w) trace_sqrt += std::sqrt(std::max(w, 0.0));
  return mean_term + trace_a + trace_b - 2.0 * trace_sqrt;
}

}  // namespace ddpm

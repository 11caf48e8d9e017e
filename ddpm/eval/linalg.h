// linalg.h: the small dense linear algebra that evaluation needs, in double.
//
//   eigh(A, n)                 A = V diag(w) V^T for a symmetric A [n, n] (row-major),
//                              w ascending (as numpy.linalg.eigh), V's columns the
//                              orthonormal eigenvectors: V[i * n + k] is component i
//                              of eigenvector k. Cyclic Jacobi rotations.
//   sqrtm_psd(A, n)            the symmetric PSD square root V diag(sqrt(max(w, 0))) V^T;
//                              eigenvalues below 0 (rounding in a PSD matrix) count as 0.
//   fit_gaussian(X, N, D)      mean [D] and covariance [D, D] of the rows of X [N, D],
//                              with the unbiased 1/(N - 1) normalization (numpy.cov).
//   frechet_distance(a, b)     the Frechet (2-Wasserstein) distance between Gaussians,
//                                ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2}),
//                              computed in the symmetric PSD form
//                                tr(S_a) + tr(S_b) - 2 tr(sqrt(sqrt(S_a) S_b sqrt(S_a))),
//                              which has the same eigenvalues as (S_a S_b)^{1/2} but needs
//                              only symmetric eigensolves (no complex parts to discard).
//
// Cyclic Jacobi (Golub & Van Loan, Matrix Computations, section 8.5): sweep over every
// off-diagonal pair (p, q) and apply the rotation that zeroes a_pq, until the
// off-diagonal mass is negligible. It is slow for large n (O(n^3) per sweep, ~10
// sweeps) but simple and accurate to rounding, which is what a 128-d feature
// covariance needs.
#pragma once

#include <cstdint>
#include <vector>

namespace ddpm {

struct SymmetricEigen {
  std::vector<double> w;  // [n] eigenvalues, ascending
  std::vector<double> V;  // [n, n] eigenvectors in columns
};

SymmetricEigen eigh(const std::vector<double>& A, int64_t n);
std::vector<double> sqrtm_psd(const std::vector<double>& A, int64_t n);

struct GaussianStats {
  int64_t D = 0;
  std::vector<double> mean;  // [D]
  std::vector<double> cov;   // [D, D]
};

GaussianStats fit_gaussian(const float* X, int64_t N, int64_t D);
double frechet_distance(const GaussianStats& a, const GaussianStats& b);

// C[n, m] = A[n, k] B[k, m], row-major, plain loops (small matrices only).
std::vector<double> matmul(const std::vector<double>& A, const std::vector<double>& B, int64_t n, int64_t k,
                           int64_t m);

}  // namespace ddpm

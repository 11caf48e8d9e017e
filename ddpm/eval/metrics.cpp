#include "ddpm/eval/metrics.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"

namespace ddpm {

namespace {

constexpr int64_t kBlock = 256;  // query rows per SGEMM block: kBlock * N floats of distances

// Squared norms of the rows, in double then rounded.
std::vector<float> row_norms2(const float* A, int64_t N, int64_t D) {
  std::vector<float> n2(N);
  for (int64_t i = 0; i < N; i++) n2[i] = static_cast<float>(dot_ref(A + i * D, A + i * D, D));
  return n2;
}

// d2[r, j] = ||Q[q0 + r]||^2 + ||A[j]||^2 - 2 Q[q0 + r] . A[j], clamped at 0, for one block.
void block_distances2(std::vector<float>& d2, const float* Q, const std::vector<float>& q_n2, int64_t q0, int64_t rows,
                      const float* A, const std::vector<float>& a_n2, int64_t NA, int64_t D) {
  d2.resize(rows * NA);
  sgemm(false, true, rows, NA, D, Q + q0 * D, D, A, D, d2.data(), NA, false);  // Q A^T
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
      for (int64_t j = 0; j < NA; j++)
        d2[r * NA + j] = std::max(0.0f, q_n2[q0 + r] + a_n2[j] - 2.0f * d2[r * NA + j]);
  });
}

}  // namespace

std::vector<float> knn_radii2(const float* A, int64_t N, int64_t D, int64_t k) {
  DDPM_CHECK(k >= 1 && N > k, "knn_radii2: needs more than k = " << k << " points, got " << N);
  const std::vector<float> n2 = row_norms2(A, N, D);
  std::vector<float> radii2(N), d2;
  for (int64_t q0 = 0; q0 < N; q0 += kBlock) {
    const int64_t rows = std::min(kBlock, N - q0);
    block_distances2(d2, A, n2, q0, rows, A, n2, N, D);
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(N);
      for (int64_t r = r0; r < r1; r++) {
        std::copy(d2.begin() + r * N, d2.begin() + (r + 1) * N, row.begin());
        row[q0 + r] = 0.0f;  // itself, exactly (the expansion above may leave rounding)
        // The k-th nearest other point is the (k+1)-th smallest distance counting itself.
        std::nth_element(row.begin(), row.begin() + k, row.end());
        radii2[q0 + r] = row[k];
      }
    });
  }
  return radii2;
}

std::vector<bool> inside_manifold(const float* Q, int64_t NQ, const float* A, const std::vector<float>& radii2,
                                  int64_t NA, int64_t D) {
  const std::vector<float> q_n2 = row_norms2(Q, NQ, D), a_n2 = row_norms2(A, NA, D);
  std::vector<char> inside(NQ, 0);
  std::vector<float> d2;
  for (int64_t q0 = 0; q0 < NQ; q0 += kBlock) {
    const int64_t rows = std::min(kBlock, NQ - q0);
    block_distances2(d2, Q, q_n2, q0, rows, A, a_n2, NA, D);
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++)
        for (int64_t j = 0; j < NA; j++)
          if (d2[r * NA + j] <= radii2[j]) {
            inside[q0 + r] = 1;
            break;
          }
    });
  }
  return std::vector<bool>(inside.begin(), inside.end());
}

PrecisionRecall precision_recall(const float* real, int64_t N_real, const float* fake, int64_t N_fake, int64_t D,
                                 int64_t k) {
  DDPM_CHECK(N_real > k && N_fake > k && D > 0, "precision_recall: needs more than k = "
                                                     << k << " points in each set, got " << N_real << " real and "
                                                     << N_fake << " fake of dimension " << D);
  const std::vector<float> real_radii2 = knn_radii2(real, N_real, D, k);
  const std::vector<float> fake_radii2 = knn_radii2(fake, N_fake, D, k);
  const std::vector<bool> fake_in_real = inside_manifold(fake, N_fake, real, real_radii2, N_real, D);
  const std::vector<bool> real_in_fake = inside_manifold(real, N_real, fake, fake_radii2, N_fake, D);
  PrecisionRecall pr;
  pr.precision = static_cast<double>(std::count(fake_in_real.begin(), fake_in_real.end(), true)) / N_fake;
  pr.recall = static_cast<double>(std::count(real_in_fake.begin(), real_in_fake.end(), true)) / N_real;
  return pr;
}

ClassStatistics class_statistics(const float* probs, int64_t N, int64_t K) {
  DDPM_CHECK(N > 0 && K > 0, "class_statistics: probs [" << N << ", " << K << "] is empty");
  ClassStatistics s;
  s.histogram.assign(K, 0);
  double confidence = 0.0;
  for (int64_t n = 0; n < N; n++) {
    const float* p = probs + n * K;
    const int64_t best = std::max_element(p, p + K) - p;  // first max on ties
    s.histogram[best]++;
    confidence += p[best];
  }
  s.mean_confidence = confidence / N;
  for (int64_t c : s.histogram)
    if (c > 0) {
      const double q = static_cast<double>(c) / N;
      s.entropy_bits -= q * std::log2(q);  // H = -sum q log2 q
    }
  return s;
}

}  // namespace ddpm

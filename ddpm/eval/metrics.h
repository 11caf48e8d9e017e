// eval/metrics.h: sample-quality measures on feature vectors and class probabilities.
//
//   precision_recall(real, fake, k)
//       Kynkaenniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
//       Generative Models". Each set's manifold is the union of balls around its points,
//       the radius of point i being the distance to its k-th nearest neighbour in the
//       same set (itself excluded). Then
//         precision = fraction of fake points inside the real manifold
//         recall    = fraction of real points inside the fake manifold
//       (inside: ||x - y|| <= radius(y) for some y of the other set). k = 3 as in the paper.
//       Distances are Euclidean, from ||a||^2 + ||b||^2 - 2 a.b in blocks of SGEMMs.
//   class_statistics(probs, N, K)
//       The histogram of argmax predictions, its entropy in bits (log2 K for a perfectly
//       balanced set), and the mean confidence (mean of the max probability).
#pragma once

#include <cstdint>
#include <vector>

namespace ddpm {

struct PrecisionRecall {
  double precision = 0.0;
  double recall = 0.0;
};

// real: [N_real, D], fake: [N_fake, D], both row-major float; N_real, N_fake > k.
PrecisionRecall precision_recall(const float* real, int64_t N_real, const float* fake, int64_t N_fake, int64_t D,
                                 int64_t k = 3);

// Squared distance of each row of A to its k-th nearest other row of A: [N].
std::vector<float> knn_radii2(const float* A, int64_t N, int64_t D, int64_t k);
// For each row of Q: is it within radius of some row of A (||q - a||^2 <= radii2[a])?
std::vector<bool> inside_manifold(const float* Q, int64_t NQ, const float* A, const std::vector<float>& radii2,
                                  int64_t NA, int64_t D);

struct ClassStatistics {
  std::vector<int64_t> histogram;  // [K] counts of argmax predictions
  double entropy_bits = 0.0;       // -sum p log2 p of the histogram normalized
  double mean_confidence = 0.0;    // mean over samples of max_k probs[n, k]
};

ClassStatistics class_statistics(const float* probs, int64_t N, int64_t K);

}  // namespace ddpm

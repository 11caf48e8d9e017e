#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/eval/metrics.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

TEST_CASE("metrics: identical sets have precision = recall = 1") {
  Tensor X = randn({300, 8}, 21);
  const PrecisionRecall pr = precision_recall(X.data(), 300, X.data(), 300, 8, 3);
  CHECK(pr.precision == 1.0);  // each point lies at distance 0 of itself (radius > 0)
  CHECK(pr.recall == 1.0);
}

TEST_CASE("metrics: far disjoint sets have precision = recall = 0") {
  Tensor X = randn({200, 4}, 22), Y = randn({150, 4}, 23);
  for (int64_t i = 0; i < Y.numel(); i++) Y[i] += 100.0f;  // radii are O(1); the gap is ~200
  const PrecisionRecall pr = precision_recall(X.data(), 200, Y.data(), 150, 4, 3);
  CHECK(pr.precision == 0.0);
  CHECK(pr.recall == 0.0);
}

TEST_CASE("metrics: a fake set that is half the real modes has precision 1, recall 1/2") {
  // Real: 4 tight clusters of 50 points at the corners (+-10, +-10); fake: exactly the
  // real points of 2 clusters. Each fake point is a real point (distance 0), so
  // precision = 1. Clusters are 20 apart and radii ~0.1, so a fake point's neighbours
  // are its own cluster's, every real point of the 2 kept clusters is a fake point
  // (inside), and no point of the 2 missing clusters is near any fake ball: recall =
  // 100 / 200 exactly.
  const int64_t per = 50, D = 2;
  const float centers[4][2] = {{10, 10}, {10, -10}, {-10, 10}, {-10, -10}};
  Tensor real({4 * per, D});
  Tensor noise = randn({4 * per, D}, 24, 0.05f);
  for (int64_t c = 0; c < 4; c++)
    for (int64_t i = 0; i < per; i++)
      for (int64_t d = 0; d < D; d++) real[(c * per + i) * D + d] = centers[c][d] + noise[(c * per + i) * D + d];
  const float* fake = real.data();  // the first two clusters
  const PrecisionRecall pr = precision_recall(real.data(), 4 * per, fake, 2 * per, D, 3);
  CHECK(pr.precision == 1.0);
  CHECK(pr.recall == 0.5);
  // Swapping the roles swaps the answers.
  const PrecisionRecall swapped = precision_recall(fake, 2 * per, real.data(), 4 * per, D, 3);
  CHECK(swapped.precision == 0.5);
  CHECK(swapped.recall == 1.0);
}

TEST_CASE("metrics: knn radii on a line are known") {
  // Points 0, 1, 3, 7, 15 on a line: 3rd nearest other neighbour distances are
  // 0 -> 7, 1 -> 6, 3 -> 4 (to 7... {1:2, 0:3, 7:4}), 7 -> 7 (0), 15 -> 14 (1).
  const float A[] = {0, 1, 3, 7, 15};
  const std::vector<float> r2 = knn_radii2(A, 5, 1, 3);
  const float want[] = {49, 36, 16, 49, 196};
  check_allclose("knn radii^2", r2.data(), want, 5, 1e-4, 0);  // exact small integers, float expansion
  // And a query at 16 lies in 15's ball (radius 14) but -8 lies in nobody's (0's radius is 7).
  const float Q[] = {16, -8};
  const std::vector<bool> in = inside_manifold(Q, 2, A, r2, 5, 1);
  CHECK(in[0]);
  CHECK(!in[1]);
}

TEST_CASE("metrics: class statistics") {
  // 4 samples over 3 classes, predictions 0, 0, 2, 1.
  const float probs[] = {0.9f, 0.05f, 0.05f, 0.6f, 0.3f, 0.1f, 0.2f, 0.2f, 0.6f, 0.1f, 0.8f, 0.1f};
  const ClassStatistics s = class_statistics(probs, 4, 3);
  CHECK(s.histogram == std::vector<int64_t>{2, 1, 1});
  CHECK(s.entropy_bits == doctest::Approx(1.5).epsilon(1e-12));  // -(1/2 log 1/2 + 2 * 1/4 log 1/4)
  CHECK(s.mean_confidence == doctest::Approx((0.9 + 0.6 + 0.6 + 0.8) / 4).epsilon(1e-6));  // float inputs
  CHECK_THROWS_AS(precision_recall(probs, 3, probs, 3, 1, 3), Error);
}

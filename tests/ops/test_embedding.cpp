#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/embedding.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck;
using testing::randn;

TEST_CASE("timestep_embedding: t = 0 gives sin = 0 and cos = 1") {
  Tensor e = timestep_embedding({0.0f, 0.0f}, 8);
  CHECK(e.shape() == Shape{2, 8});
  for (int64_t n = 0; n < 2; n++)
    for (int64_t i = 0; i < 4; i++) {
      CHECK(e[n * 8 + i] == 0.0f);
      CHECK(e[n * 8 + 4 + i] == 1.0f);
    }
}

TEST_CASE("timestep_embedding: hand-computed entries") {
  // dim = 4: half = 2, freq = [1, 1/10000]; t = 1000: [sin 1000, sin 0.1, cos 1000, cos 0.1].
  // The sines and cosines are from Python's math module (double).
  Tensor e = timestep_embedding({1000.0f}, 4);
  // Computed in double, rounded to float once: within 1 float ulp (6e-8) of the truth.
  CHECK(std::fabs(e[0] - 0.8268795405320025) < 1e-7);
  CHECK(std::fabs(e[1] - 0.09983341664682815) < 1e-7);
  CHECK(std::fabs(e[2] - 0.5623790762907029) < 1e-7);
  CHECK(std::fabs(e[3] - 0.9950041652780258) < 1e-7);
  // dim = 8: half = 4, freq_1 = 10000^(-1/3); t = 10: arg = 10^(-1/3) = 0.46415888336127775,
  // sin = 0.4476708347189571, cos = 0.8941984252625544 (Python math, double).
  Tensor f = timestep_embedding({3.0f, 10.0f}, 8);
  CHECK(std::fabs(f[8 + 1] - 0.4476708347189571) < 1e-7);
  CHECK(std::fabs(f[8 + 4 + 1] - 0.8941984252625544) < 1e-7);
  // The last frequency is 1/10000 and the first is 1: row 0 (t = 3) starts with sin 3.
  CHECK(std::fabs(f[0] - std::sin(3.0)) < 1e-7);
  CHECK(std::fabs(f[3] - std::sin(3e-4)) < 1e-7);
  // sin^2 + cos^2 = 1 for every frequency: a few float ulps.
  for (int64_t n = 0; n < 2; n++)
    for (int64_t i = 0; i < 4; i++) {
      const float s = f[n * 8 + i], c = f[n * 8 + 4 + i];
      CHECK(std::fabs(s * s + c * c - 1.0f) < 1e-6);
    }
}

TEST_CASE("timestep_embedding: dim must be even and >= 4") {
  CHECK_THROWS_AS(timestep_embedding({1.0f}, 7), Error);
  CHECK_THROWS_AS(timestep_embedding({1.0f}, 2), Error);
  CHECK_THROWS_AS(timestep_embedding({1.0f}, 0), Error);
  CHECK(timestep_embedding({}, 4).shape() == Shape{0, 4});
}

TEST_CASE("embedding: rows are looked up, and backward scatter-adds repeated ids") {
  Tape tape;
  Var table = variable(Tensor::from({3, 2}, {0, 1, 10, 11, 20, 21}));
  Var y = embedding(tape, {2, 0, 2}, table);
  CHECK(y->value.shape() == Shape{3, 2});
  CHECK(y->value.to_vector() == std::vector<float>{20, 21, 0, 1, 20, 21});
  tape.backward(y, Tensor::from({3, 2}, {1, 2, 3, 4, 5, 6}));
  CHECK(table->grad.to_vector() == std::vector<float>{3, 4, 0, 0, 1 + 5, 2 + 6});
  // Linear in the table (row 2 unused: its gradient must be exactly 0, which the
  // per-entry atol checks): float32 central differences are exact but for output rounding.
  gradcheck("embedding", [](Tape& t, const std::vector<Var>& v) { return embedding(t, {1, 3, 1, 0}, v[0]); },
            {randn({4, 5}, 1)}, 0.25, testing::GradTol{2e-6, 1e-5});
}

TEST_CASE("embedding: ids out of range and a table that is not 2-D are errors") {
  Tape tape;
  Var table = constant(Tensor({3, 2}));
  CHECK_THROWS_AS(embedding(tape, {0, 3}, table), Error);
  CHECK_THROWS_AS(embedding(tape, {-1}, table), Error);
  CHECK_THROWS_AS(embedding(tape, {0}, constant(Tensor({6}))), Error);
  CHECK(embedding(tape, {}, table)->value.shape() == Shape{0, 2});
}

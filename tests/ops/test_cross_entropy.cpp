#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/ops/cross_entropy.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

TEST_CASE("cross_entropy: hand values") {
  Tape tape = Tape::no_grad();
  // Equal logits over K classes: loss = log K.
  Var a = cross_entropy(tape, constant(Tensor({2, 10})), {3, 7});
  CHECK(a->value[0] == doctest::Approx(std::log(10.0)).epsilon(1e-6));  // float32 output
  // Row [1, 2, 3], label 2: log(e + e^2 + e^3) - 3; row [1000, 0], label 0: ~0 (no overflow).
  Var b = cross_entropy(tape, constant(Tensor::from({2, 3}, {1, 2, 3, 1000, 0, 0})), {2, 0});
  const double want = 0.5 * (std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0);
  CHECK(b->value[0] == doctest::Approx(want).epsilon(1e-6));
  Tensor p({1, 3});
  softmax_forward(p.data(), Tensor::from({1, 3}, {0, 0, std::log(2.0f)}).data(), 1, 3);
  check_allclose("softmax", p, Tensor::from({1, 3}, {0.25f, 0.25f, 0.5f}), 1e-7, 0);  // float rounding
}

TEST_CASE("cross_entropy: backward matches finite differences") {
  const std::vector<int64_t> labels = {0, 4, 2, 2, 1};
  // Against a double twin written from the header's formula,
  //   (1/N) sum_n (logsumexp(logits[n]) - logits[n, labels[n]]).
  // An entry is (softmax - onehot) / N, one float32 rounding of values <= 0.2.
  auto twin = [&](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
    const int64_t N = 5, K = 5;
    double loss = 0.0;
    for (int64_t n = 0; n < N; n++) {
      double row_max = in[0][n * K];
      for (int64_t k = 1; k < K; k++) row_max = std::max(row_max, in[0][n * K + k]);
      double total = 0.0;
      for (int64_t k = 0; k < K; k++) total += std::exp(in[0][n * K + k] - row_max);
      loss += row_max + std::log(total) - in[0][n * K + labels[n]];
    }
    out[0] = loss / N;
  };
  gradcheck_twin("cross_entropy", [&](Tape& t, const std::vector<Var>& in) { return cross_entropy(t, in[0], labels); },
                 twin, {randn({5, 5}, 8, 2.0f)}, GradTol{1e-7, 1e-5});
}

TEST_CASE("cross_entropy: rejects bad labels and shapes") {
  Tape tape;
  CHECK_THROWS_AS(cross_entropy(tape, constant(Tensor({2, 3})), {0, 3}), Error);
  CHECK_THROWS_AS(cross_entropy(tape, constant(Tensor({2, 3})), {0}), Error);
  CHECK_THROWS_AS(cross_entropy(tape, constant(Tensor({2, 3, 1, 1})), {0, 1}), Error);
}

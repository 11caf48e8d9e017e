#include <cmath>
#include <limits>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/dropout.h"
#include "ddpm/core/parallel.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck;
using testing::randn;

TEST_CASE("dropout: keeps about 1-p of the elements and scales them by 1/(1-p)") {
  const int64_t n = 100000;
  Tensor x = randn({n}, 1);
  for (float p : {0.1f, 0.3f, 0.9f}) {
    CAPTURE(p);
    Tape tape = Tape::no_grad();
    Var y = dropout(tape, constant(x), p, RngKey{7, 1}, true);
    const float scale = 1.0f / (1.0f - p);
    int64_t kept = 0, wrong = 0;
    for (int64_t i = 0; i < n; i++) {
      if (y->value[i] != 0.0f) {
        kept++;
        wrong += y->value[i] != x[i] * scale;  // the same float multiply: exact
      }
    }
    CHECK(wrong == 0);
    // The kept count is Binomial(n, 1-p): std = sqrt(n p (1-p)) <= 158; allow ~6 std.
    CHECK(std::fabs(static_cast<double>(kept) / n - (1.0 - p)) < 0.01);
  }
}

TEST_CASE("dropout: the mask depends on the key and the element index only") {
  const int64_t n = 20000;
  const float p = 0.5f;
  Tensor x = Tensor::full({n}, 1.0f);
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tape tape = Tape::no_grad();
    Var y = dropout(tape, constant(x), p, RngKey{3, 9}, true);
    if (first.empty()) first = y->value.to_vector();
    CAPTURE(threads);
    CHECK(y->value.to_vector() == first);  // same key: the same mask at any thread count
  }
  set_num_threads(1);
  // A prefix of the tensor gets the prefix of the mask.
  Tensor out_prefix({100});
  dropout_forward(out_prefix.data(), x.data(), 100, p, RngKey{3, 9});
  CHECK(out_prefix.to_vector() == std::vector<float>(first.begin(), first.begin() + 100));
  // A slice from element 1234 (a micro-batch's samples) gets that slice of the mask, forward
  // and backward.
  Tensor out_slice({300}), d_slice({300});
  dropout_forward(out_slice.data(), x.data(), 300, p, RngKey{3, 9}, 1234);
  CHECK(out_slice.to_vector() == std::vector<float>(first.begin() + 1234, first.begin() + 1534));
  dropout_backward(d_slice.data(), x.data(), 300, p, RngKey{3, 9}, 1234);
  CHECK(d_slice.to_vector() == out_slice.to_vector());  // dout = 1: dx is the mask times the scale
  // A different seed or stream gives a different mask: two independent p = 0.5 masks
  // differ at about half the elements (std ~70 of 20000).
  for (RngKey other : {RngKey{4, 9}, RngKey{3, 10}}) {
    Tensor y2({n});
    dropout_forward(y2.data(), x.data(), n, p, other);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += (y2[i] != first[i]);
    CHECK(std::fabs(static_cast<double>(differ) / n - 0.5) < 0.02);
  }
}

TEST_CASE("dropout: identity when p == 0 or not training") {
  Tape tape;
  Var x = variable(randn({3, 4}, 2));
  CHECK(dropout(tape, x, 0.0f, RngKey{1, 1}, true) == x);
  CHECK(dropout(tape, x, 0.5f, RngKey{1, 1}, false) == x);
  CHECK(tape.size() == 0);  // nothing recorded
}

TEST_CASE("dropout: backward recomputes the mask") {
  const int64_t n = 1000;
  const float p = 0.25f;
  Tape tape;
  Var x = variable(Tensor::full({n}, 1.0f));
  Var y = dropout(tape, x, p, RngKey{5, 5}, true);  // y = keep * scale
  tape.backward(y, Tensor::full({n}, 1.0f));
  CHECK(x->grad.to_vector() == y->value.to_vector());  // dx = keep * scale * 1
  // Linear in x (the mask is a function of the key): float32 central differences are
  // exact but for the rounding of the one output an entry moves, over h = 0.25.
  gradcheck("dropout", [](Tape& t, const std::vector<Var>& v) { return dropout(t, v[0], 0.4f, RngKey{11, 2}, true); },
            {randn({4, 5}, 3)}, 0.25, testing::GradTol{2e-6, 1e-5});
}

TEST_CASE("dropout: p outside [0, 1) is an error") {
  Tape tape;
  Var x = constant(Tensor({4}));
  CHECK_THROWS_AS(dropout(tape, x, 1.0f, RngKey{}, true), Error);
  CHECK_THROWS_AS(dropout(tape, x, -0.1f, RngKey{}, true), Error);
  CHECK_THROWS_AS(dropout(tape, x, std::numeric_limits<float>::quiet_NaN(), RngKey{}, true), Error);
  CHECK_THROWS_AS(dropout(tape, x, 1.5f, RngKey{}, false), Error);  // checked even when not training
}

#include "ddpm/check.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/parallel.h"
#include "ddpm/simd.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck;
using testing::randn;

TEST_CASE("silu: kernels match their double twins at awkward lengths") {
  const int64_t L = simd::kLanes;
  for (int64_t n : {int64_t(0), int64_t(1), L > 1 ? L - 1 : 2, L, L + 1, int64_t(15), int64_t(17), int64_t(5000),
                    int64_t(8195)}) {
    CAPTURE(n);
    Tensor x = randn({n}, 11, 3.0f), dout = randn({n}, 12);
    Tensor y(Shape{n}), y_ref(Shape{n}), dx = Tensor::full({n}, 0.5f), dx_ref = Tensor::full({n}, 0.5f);
    silu_forward(y.data(), x.data(), n);
    silu_forward_ref(y_ref.data(), x.data(), n);
    silu_backward(dx.data(), dout.data(), x.data(), n);
    silu_backward_ref(dx_ref.data(), dout.data(), x.data(), n);
    // simd::exp is within 2e-7 relative, then a divide and a few products: a few ulps.
    testing::check_allclose("silu fwd", y.data(), y_ref.data(), n, 1e-6, 1e-5);
    testing::check_allclose("silu bwd", dx.data(), dx_ref.data(), n, 1e-6, 1e-5);
  }
}

TEST_CASE("silu: kernels are bit-identical at 1, 2 and 3 threads") {
  const int64_t n = 3 * 4096 + 7;  // several parallel chunks, chunk edges off the lanes
  Tensor x = randn({n}, 13, 4.0f), dout = randn({n}, 14);
  std::vector<float> y1, dx1;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tensor y(Shape{n}), dx = Tensor::full({n}, 0.25f);
    silu_forward(y.data(), x.data(), n);
    silu_backward(dx.data(), dout.data(), x.data(), n);
    if (y1.empty()) y1 = y.to_vector(), dx1 = dx.to_vector();
    CHECK(y.to_vector() == y1);
    CHECK(dx.to_vector() == dx1);
  }
  set_num_threads(1);
}

TEST_CASE("elementwise: gradients match finite differences") {
  gradcheck([](Tape& t, const std::vector<Var>& v) { return add(t, v[0], v[1]); },
            {randn({2, 3, 4, 5}, 1), randn({2, 3, 4, 5}, 2)}, 1e-2, 1e-2, "add");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return add(t, v[0], v[1]); },
            {randn({2, 3, 4, 5}, 1), randn({2, 3}, 2)}, 1e-2, 1e-2, "add [N,C] broadcast");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return mul(t, v[0], v[1]); },
            {randn({2, 3, 4}, 3), randn({2, 3, 4}, 4)}, 1e-2, 1e-2, "mul");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return scale(t, v[0], -1.7f); }, {randn({7}, 5)}, 1e-2, 1e-2,
            "scale");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return silu(t, v[0]); }, {randn({3, 5, 2}, 6, 2.0f)}, 1e-2,
            1e-2, "silu");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return sum(t, v[0]); }, {randn({4, 3}, 7)}, 1e-2, 1e-2, "sum");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return mean(t, v[0]); }, {randn({4, 3}, 8)}, 1e-2, 1e-2,
            "mean");
  gradcheck([](Tape& t, const std::vector<Var>& v) { return mse_loss(t, v[0], v[1]); },
            {randn({2, 1, 3, 3}, 9), randn({2, 1, 3, 3}, 10)}, 1e-2, 1e-2, "mse_loss");
}

TEST_CASE("elementwise: values and shape errors") {
  Tape tape;
  Var a = constant(Tensor::from({2}, {1, 2})), b = constant(Tensor::from({2}, {3, 5}));
  CHECK(mse_loss(tape, a, b)->value[0] == doctest::Approx((4.0 + 9.0) / 2));
  CHECK(mean(tape, b)->value[0] == 4.0f);
  CHECK_THROWS_AS(add(tape, a, constant(Tensor({3}))), Error);
  CHECK_THROWS_AS(add(tape, constant(Tensor({2, 3, 4, 4})), constant(Tensor({2, 4}))), Error);
  CHECK_THROWS_AS(mul(tape, a, constant(Tensor({3}))), Error);
}

#include "ddpm/core/check.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/simd.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck;
using testing::gradcheck_twin;
using testing::GradTol;
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

TEST_CASE("silu: silu_forward_serial gives silu_forward's values at awkward lengths") {
  const int64_t L = simd::kLanes;
  for (int64_t n : {int64_t(0), int64_t(1), L > 1 ? L - 1 : 2, L, L + 1, int64_t(5000), int64_t(8195)}) {
    CAPTURE(n);
    Tensor x = randn({n}, 15, 3.0f), y(Shape{n}), y_serial(Shape{n});
    silu_forward(y.data(), x.data(), n);
    silu_forward_serial(y_serial.data(), x.data(), n);
    CHECK(y.to_vector() == y_serial.to_vector());
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
  // add, mul, scale, sum and mean are linear in each input and mse_loss is quadratic, so
  // float32 central differences are exact but for the rounding of the outputs an entry
  // moves (~6e-8 |out| each, |out| <= ~5) over the step: h = 0.25 keeps that below ~2e-6
  // of the entry (typical entry ~1); the analytic entries are exact or one rounding.
  const GradTol exact{2e-6, 1e-5};
  gradcheck("add", [](Tape& t, const std::vector<Var>& v) { return add(t, v[0], v[1]); },
            {randn({2, 3, 4, 5}, 1), randn({2, 3, 4, 5}, 2)}, 0.25, exact);
  // b's entries sum 20 products of out's weight: ~20 roundings of values ~1.
  gradcheck("add [N,C] broadcast", [](Tape& t, const std::vector<Var>& v) { return add(t, v[0], v[1]); },
            {randn({2, 3, 4, 5}, 1), randn({2, 3}, 2)}, 0.25, GradTol{1e-5, 1e-5});
  gradcheck("mul", [](Tape& t, const std::vector<Var>& v) { return mul(t, v[0], v[1]); },
            {randn({2, 3, 4}, 3), randn({2, 3, 4}, 4)}, 0.25, exact);
  gradcheck("scale", [](Tape& t, const std::vector<Var>& v) { return scale(t, v[0], -1.7f); }, {randn({7}, 5)}, 0.25,
            exact);
  gradcheck("sum", [](Tape& t, const std::vector<Var>& v) { return sum(t, v[0]); }, {randn({4, 3}, 7)}, 0.25, exact);
  gradcheck("mean", [](Tape& t, const std::vector<Var>& v) { return mean(t, v[0]); }, {randn({4, 3}, 8)}, 0.25,
            exact);
  gradcheck("mse_loss", [](Tape& t, const std::vector<Var>& v) { return mse_loss(t, v[0], v[1]); },
            {randn({2, 1, 3, 3}, 9), randn({2, 1, 3, 3}, 10)}, 0.25, exact);
  // silu against its double twin: one float32 product per entry (simd silu', ~2 ulp).
  gradcheck_twin(
      "silu", [](Tape& t, const std::vector<Var>& v) { return silu(t, v[0]); },
      [](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
        silu_forward_ref(out.data(), in[0].data(), static_cast<int64_t>(in[0].size()));
      },
      {randn({3, 5, 2}, 6, 2.0f)}, GradTol{1e-6, 1e-5});
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

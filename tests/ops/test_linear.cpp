#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/linear.h"
#include "ddpm/core/simd.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck_twin;
using testing::GradTol;
using testing::randn;

TEST_CASE("linear: kernels match their double twins at awkward sizes") {
  const int64_t L = simd::kLanes;
  uint64_t seed = 1;
  for (int64_t N : {1, 3, 17})
    for (int64_t IN : {int64_t(1), L + 1, int64_t(300)})
      for (int64_t OUT : {int64_t(1), L - 1 > 0 ? L - 1 : 2, int64_t(33)}) {
        CAPTURE(N);
        CAPTURE(IN);
        CAPTURE(OUT);
        Tensor x = randn({N, IN}, seed), weight = randn({OUT, IN}, seed + 1), bias = randn({OUT}, seed + 2);
        Tensor out({N, OUT}), out_ref({N, OUT});
        linear_forward(out.data(), x.data(), weight.data(), bias.data(), N, IN, OUT);
        linear_forward_ref(out_ref.data(), x.data(), weight.data(), bias.data(), N, IN, OUT);
        // float32 sums of IN <= 300 products of N(0,1) values against double: as sgemm's test.
        testing::check_allclose("linear forward", out, out_ref, 1e-4 * (1 + IN / 50.0), 1e-4);

        // Backward adds into non-zero gradients.
        Tensor dout = randn({N, OUT}, seed + 3);
        Tensor dx = randn({N, IN}, seed + 4), dweight = randn({OUT, IN}, seed + 5), dbias = randn({OUT}, seed + 6);
        Tensor dx_ref = dx.clone(), dweight_ref = dweight.clone(), dbias_ref = dbias.clone();
        linear_backward(dx.data(), dweight.data(), dbias.data(), dout.data(), x.data(), weight.data(), N, IN, OUT);
        linear_backward_ref(dx_ref.data(), dweight_ref.data(), dbias_ref.data(), dout.data(), x.data(),
                            weight.data(), N, IN, OUT);
        // Sums of OUT <= 33 (dx) or N <= 17 (dweight, dbias) products: float rounding ~1e-6.
        testing::check_allclose("linear dx", dx, dx_ref, 1e-5, 1e-5);
        testing::check_allclose("linear dweight", dweight, dweight_ref, 1e-5, 1e-5);
        testing::check_allclose("linear dbias", dbias, dbias_ref, 1e-5, 1e-5);
        seed += 10;
      }
}

TEST_CASE("linear: gradients match finite differences") {
  // Against the double twin. An entry is a float32 sum of at most 7 products of N(0, 1)
  // values: rounding ~1e-7 of the sum of |terms|, below 1e-6 absolute.
  auto twin = [](int64_t N, int64_t IN, int64_t OUT, bool has_bias) {
    return [=](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
      linear_forward_ref(out.data(), in[0].data(), in[1].data(), has_bias ? in[2].data() : nullptr, N, IN, OUT);
    };
  };
  gradcheck_twin("linear", [](Tape& t, const std::vector<Var>& v) { return linear(t, v[0], v[1], v[2]); },
                 twin(3, 7, 5, true), {randn({3, 7}, 1), randn({5, 7}, 2), randn({5}, 3)}, GradTol{1e-6, 1e-5});
  gradcheck_twin("linear no bias", [](Tape& t, const std::vector<Var>& v) { return linear(t, v[0], v[1], Var()); },
                 twin(2, 4, 3, false), {randn({2, 4}, 4), randn({3, 4}, 5)}, GradTol{1e-6, 1e-5});
}

TEST_CASE("linear: hand-computed values") {
  Tape tape;
  Var x = variable(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var w = variable(Tensor::from({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5}));
  Var b = variable(Tensor::from({2}, {10, 20}));
  Var out = linear(tape, x, w, b);
  // out[n, o] = sum_i x[n, i] w[o, i] + b[o]: (1 - 3 + 10, 3 + 20), (4 - 6 + 10, 7.5 + 20)
  REQUIRE(out->value.shape() == Shape{2, 2});
  CHECK(out->value.to_vector() == std::vector<float>{8, 23, 8, 27.5});
  // dout = identity: dx = dout w = w, dw = dout^T x = x, db = column sums = (1, 1).
  tape.backward(out, Tensor::from({2, 2}, {1, 0, 0, 1}));
  CHECK(x->grad.to_vector() == std::vector<float>{1, 0, -1, 0.5, 0.5, 0.5});
  CHECK(w->grad.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(b->grad.to_vector() == std::vector<float>{1, 1});
}

TEST_CASE("linear: shape errors name the op") {
  Tape tape;
  Var x = constant(Tensor({2, 3})), w = constant(Tensor({4, 3})), b = constant(Tensor({4}));
  CHECK(linear(tape, x, w, b)->value.shape() == Shape{2, 4});
  CHECK(linear(tape, x, w, Var())->value.shape() == Shape{2, 4});
  CHECK_THROWS_AS(linear(tape, constant(Tensor({2, 3, 1})), w, b), Error);  // x not 2-D
  CHECK_THROWS_AS(linear(tape, x, constant(Tensor({4, 5})), b), Error);     // IN mismatch
  CHECK_THROWS_AS(linear(tape, x, constant(Tensor({12})), b), Error);       // weight not 2-D
  CHECK_THROWS_AS(linear(tape, x, w, constant(Tensor({3}))), Error);        // bias size
  try {
    linear(tape, x, constant(Tensor({4, 5})), b);
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("linear") != std::string::npos);
    CHECK(what.find("[4, 5]") != std::string::npos);
    CHECK(what.find("[2, 3]") != std::string::npos);
  }
}

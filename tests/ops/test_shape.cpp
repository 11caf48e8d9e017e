#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/shape.h"
#include "ddpm/core/parallel.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck;
using testing::randn;

TEST_CASE("upsample_nearest2x: each value fills its 2x2 block") {
  Tape tape = Tape::no_grad();
  // One 2x3 plane, values 1..6.
  Var y = upsample_nearest2x(tape, constant(Tensor::from({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6})));
  CHECK(y->value.shape() == Shape{1, 1, 4, 6});
  const std::vector<float> want = {1, 1, 2, 2, 3, 3,  //
                                   1, 1, 2, 2, 3, 3,  //
                                   4, 4, 5, 5, 6, 6,  //
                                   4, 4, 5, 5, 6, 6};
  CHECK(y->value.to_vector() == want);
  // Against the definition out[r, y, x] = in[r, y/2, x/2], several planes, odd sizes.
  const int64_t N = 2, C = 3, H = 5, W = 7;
  Tensor x = randn({N, C, H, W}, 1);
  Var z = upsample_nearest2x(tape, constant(x));
  for (int64_t r = 0; r < N * C; r++)
    for (int64_t yy = 0; yy < 2 * H; yy++)
      for (int64_t xx = 0; xx < 2 * W; xx++)
        REQUIRE(z->value[(r * 2 * H + yy) * 2 * W + xx] == x[(r * H + yy / 2) * W + xx / 2]);
}

TEST_CASE("upsample_nearest2x: backward sums each 2x2 block, and adds") {
  Tensor dout = Tensor::from({1, 1, 2, 4}, {1, 2, 3, 4, 10, 20, 30, 40});
  Tensor dx = Tensor::full({2}, 100.0f);
  upsample_nearest2x_backward(dx.data(), dout.data(), 1, 1, 2);
  CHECK(dx[0] == 100 + 1 + 2 + 10 + 20);
  CHECK(dx[1] == 100 + 3 + 4 + 30 + 40);
}

TEST_CASE("concat_channels: values, and backward splits the gradient") {
  Tape tape;
  // N = 2, H = 1, W = 2; a has one channel, b two.
  Var a = variable(Tensor::from({2, 1, 1, 2}, {1, 2, 3, 4}));
  Var b = variable(Tensor::from({2, 2, 1, 2}, {10, 20, 30, 40, 50, 60, 70, 80}));
  Var y = concat_channels(tape, a, b);
  CHECK(y->value.shape() == Shape{2, 3, 1, 2});
  CHECK(y->value.to_vector() == std::vector<float>{1, 2, 10, 20, 30, 40, 3, 4, 50, 60, 70, 80});
  Tensor up(y->value.shape());
  for (int64_t i = 0; i < up.numel(); i++) up[i] = static_cast<float>(i);
  tape.backward(y, up);
  CHECK(a->grad.to_vector() == std::vector<float>{0, 1, 6, 7});
  CHECK(b->grad.to_vector() == std::vector<float>{2, 3, 4, 5, 8, 9, 10, 11});
}

TEST_CASE("shape: gradients match finite differences") {
  // Both copy values, so they are linear and float32 central differences are exact but
  // for the rounding of the moved outputs (~6e-8 |out| over the step h = 0.25); an
  // upsample entry sums 4 weights (a few roundings of values ~1).
  gradcheck("upsample_nearest2x", [](Tape& t, const std::vector<Var>& v) { return upsample_nearest2x(t, v[0]); },
            {randn({2, 3, 3, 2}, 2)}, 0.25, testing::GradTol{2e-6, 1e-5});
  gradcheck("concat_channels", [](Tape& t, const std::vector<Var>& v) { return concat_channels(t, v[0], v[1]); },
            {randn({2, 3, 2, 3}, 3), randn({2, 1, 2, 3}, 4)}, 0.25, testing::GradTol{2e-6, 1e-5});
}

TEST_CASE("shape: results do not depend on the thread count") {
  Tensor x = randn({3, 5, 6, 7}, 5), b = randn({3, 2, 6, 7}, 6), dout = randn({3, 7, 12, 14}, 7);
  std::vector<float> first_y, first_dx, first_db;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tape tape;
    Var xv = variable(x.clone()), bv = variable(b.clone());
    Var y = upsample_nearest2x(tape, concat_channels(tape, xv, bv));
    tape.backward(y, dout);
    if (threads == 1) {
      first_y = y->value.to_vector();
      first_dx = xv->grad.to_vector();
      first_db = bv->grad.to_vector();
      continue;
    }
    CHECK(y->value.to_vector() == first_y);
    CHECK(xv->grad.to_vector() == first_dx);
    CHECK(bv->grad.to_vector() == first_db);
  }
  set_num_threads(1);
}

TEST_CASE("shape: shape errors") {
  Tape tape;
  CHECK_THROWS_AS(upsample_nearest2x(tape, constant(Tensor({2, 3, 4}))), Error);
  Var a = constant(Tensor({2, 3, 4, 4}));
  CHECK_THROWS_AS(concat_channels(tape, a, constant(Tensor({3, 3, 4, 4}))), Error);  // N differs
  CHECK_THROWS_AS(concat_channels(tape, a, constant(Tensor({2, 3, 5, 4}))), Error);  // H differs
  CHECK_THROWS_AS(concat_channels(tape, a, constant(Tensor({2, 3, 4, 5}))), Error);  // W differs
  CHECK_THROWS_AS(concat_channels(tape, a, constant(Tensor({2, 3, 16}))), Error);    // not 4-D
  CHECK(concat_channels(tape, a, constant(Tensor({2, 5, 4, 4})))->value.shape() == Shape{2, 8, 4, 4});
}

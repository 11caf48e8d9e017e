#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/ops/pool.h"
#include "tests/testing.h"

using namespace ddpm;
using namespace ddpm::testing;

namespace {
// Values a distinct permutation of {-n/2, ..., n/2} * 0.1 (shuffled), so every 2x2
// window has a unique max with a margin of >= 0.1 > 2h and no value is near 0:
// finite differences never cross a kink.
Tensor separated(const Shape& shape, uint64_t seed) {
  Tensor t(shape);
  const int64_t n = t.numel();
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  Generator gen(seed, 1);
  for (int64_t i = n - 1; i > 0; i--) std::swap(perm[i], perm[gen.below(i + 1)]);
  for (int64_t i = 0; i < n; i++) t[i] = 0.1f * static_cast<float>(perm[i] - n / 2) + 0.05f;
  return t;
}
}  // namespace

TEST_CASE("pool: relu kernels match their twins") {
  for (int64_t n : {0, 1, 7, 8, 9, 10000}) {
    Tensor x = randn({n}, 3), dout = randn({n}, 4);
    Tensor a({n}), b({n}), da = Tensor::full({n}, 0.5f), db = Tensor::full({n}, 0.5f);
    relu_forward(a.data(), x.data(), n);
    relu_forward_ref(b.data(), x.data(), n);
    check_allclose("relu forward", a, b, 0, 0);  // exact: same selection
    relu_backward(da.data(), dout.data(), x.data(), n);
    relu_backward_ref(db.data(), dout.data(), x.data(), n);
    check_allclose("relu backward", da, db, 0, 0);
  }
}

TEST_CASE("pool: max_pool2x2 kernels match their twins, ties go to the first") {
  const int64_t NC = 6, H = 8, W = 6;
  Tensor x = randn({NC, H, W}, 5);
  for (int64_t i = 0; i < 24; i++) x[i] = 1.0f;  // whole windows of ties in the first plane
  Tensor dout = randn({NC, H / 2, W / 2}, 6);
  Tensor a({NC, H / 2, W / 2}), b({NC, H / 2, W / 2});
  std::vector<uint8_t> argmax(a.numel());
  max_pool2x2_forward(a.data(), argmax.data(), x.data(), NC, H, W);
  max_pool2x2_forward_ref(b.data(), x.data(), NC, H, W);
  check_allclose("max_pool forward", a, b, 0, 0);  // exact: a selection
  Tensor da = Tensor::full({NC, H, W}, 0.25f), db = Tensor::full({NC, H, W}, 0.25f);
  max_pool2x2_backward(da.data(), dout.data(), argmax.data(), NC, H, W);
  max_pool2x2_backward_ref(db.data(), dout.data(), x.data(), NC, H, W);
  check_allclose("max_pool backward", da, db, 0, 0);
  CHECK(argmax[0] == 0);  // a tied window routes to its top-left element (PyTorch)
}

TEST_CASE("pool: hand values") {
  // [[1, 5], [3, -2]] -> 5; relu of [-1, 0, 2] = [0, 0, 2].
  Tape tape;
  Var x = variable(Tensor::from({1, 1, 2, 2}, {1, 5, 3, -2}));
  Var y = max_pool2x2(tape, x);
  CHECK(y->value[0] == 5.0f);
  tape.backward(y, Tensor::from({1, 1, 1, 1}, {2.0f}));
  check_allclose("max_pool dx", x->grad, Tensor::from({1, 1, 2, 2}, {0, 2, 0, 0}), 0, 0);
  Var r = relu(tape, constant(Tensor::from({3}, {-1, 0, 2})));
  check_allclose("relu", r->value, Tensor::from({3}, {0, 0, 2}), 0, 0);
}

TEST_CASE("pool: backward matches finite differences") {
  // Against the double twins. separated() keeps every input >= 0.05 from 0 and from the
  // others, far beyond h = 1e-6, so no difference crosses a kink; an entry is dout itself
  // or 0, exactly, so the tolerance only allows float32 rounding of R.
  gradcheck_twin(
      "relu", [](Tape& t, const std::vector<Var>& in) { return relu(t, in[0]); },
      [](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
        relu_forward_ref(out.data(), in[0].data(), static_cast<int64_t>(in[0].size()));
      },
      {separated({2, 3, 4, 4}, 1)}, GradTol{1e-7, 1e-6});
  gradcheck_twin(
      "max_pool2x2", [](Tape& t, const std::vector<Var>& in) { return max_pool2x2(t, in[0]); },
      [](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
        max_pool2x2_forward_ref(out.data(), in[0].data(), 2 * 3, 4, 6);
      },
      {separated({2, 3, 4, 6}, 2)}, GradTol{1e-7, 1e-6});
}

TEST_CASE("pool: max_pool2x2 rejects odd sizes and non-4-D inputs") {
  Tape tape;
  CHECK_THROWS_AS(max_pool2x2(tape, constant(Tensor({1, 1, 3, 4}))), Error);
  CHECK_THROWS_AS(max_pool2x2(tape, constant(Tensor({4, 4}))), Error);
}

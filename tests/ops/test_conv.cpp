#include <cmath>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/conv.h"
#include "ddpm/core/parallel.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck_twin;
using testing::GradTol;
using testing::randn;

namespace {

struct Config {
  int64_t K, stride, pad;
};
// The three the U-Net uses, then stride 2 without padding and an even kernel at stride 3,
// then stride 1 at the implicit GEMM's largest padding (K-1) and past it (the im2col path).
const Config kConfigs[] = {{3, 1, 1}, {3, 2, 1}, {1, 1, 0}, {3, 2, 0}, {2, 3, 1}, {3, 1, 2}, {1, 1, 1}};

// Kernel against its double twin, forward and every backward output, on one size.
void check_against_ref(const Conv2dSize& s, uint64_t seed) {
  const int64_t CKK = s.C * s.K * s.K;
  const Shape x_shape{s.N, s.C, s.H, s.W}, w_shape{s.OC, s.C, s.K, s.K}, out_shape{s.N, s.OC, s.OH(), s.OW()};
  Tensor x = randn(x_shape, seed), weight = randn(w_shape, seed + 1), bias = randn({s.OC}, seed + 2);
  Tensor out(out_shape), out_ref(out_shape);
  conv2d_forward(out.data(), x.data(), weight.data(), bias.data(), s);
  conv2d_forward_ref(out_ref.data(), x.data(), weight.data(), bias.data(), s);
  // Float32 against double. A sum of T products of N(0,1) values has partial sums of
  // size ~sqrt(T) and rounding ~sqrt(T) * 6e-8 * sqrt(T) = 6e-8 T: the bounds below
  // leave a 10-20x margin over the errors measured at the largest sizes here.
  const double fwd_terms = static_cast<double>(CKK);                // forward: C*K*K per output
  const double dx_terms = static_cast<double>(s.OC * s.K * s.K);    // dx: OC*K*K per pixel
  const double batch_terms = static_cast<double>(s.N * s.OH() * s.OW());  // dweight, dbias: N*OH*OW
  const double fwd_atol = 1e-6 * (1 + fwd_terms), dx_atol = 1e-6 * (1 + dx_terms);
  // dweight and dbias sum N*OH*OW terms (up to 7840) in float; measured ~1e-6 sqrt(terms).
  const double batch_atol = 1e-5 * std::sqrt(batch_terms);
  testing::check_allclose("conv2d forward", out, out_ref, fwd_atol, 1e-4);

  // Backward adds into whatever the gradients hold: start them non-zero.
  Tensor dout = randn(out_shape, seed + 3);
  Tensor dx = randn(x_shape, seed + 4), dweight = randn(w_shape, seed + 5), dbias = randn({s.OC}, seed + 6);
  Tensor dx_ref = dx.clone(), dweight_ref = dweight.clone(), dbias_ref = dbias.clone();
  conv2d_backward(dx.data(), dweight.data(), dbias.data(), dout.data(), x.data(), weight.data(), s);
  conv2d_backward_ref(dx_ref.data(), dweight_ref.data(), dbias_ref.data(), dout.data(), x.data(), weight.data(), s);
  testing::check_allclose("conv2d dx", dx, dx_ref, dx_atol, 1e-4);
  testing::check_allclose("conv2d dweight", dweight, dweight_ref, batch_atol, 1e-4);
  testing::check_allclose("conv2d dbias", dbias, dbias_ref, batch_atol, 1e-4);

  // Each gradient alone (the others null) gives the same values.
  Tensor dx_only = Tensor::zeros(x_shape), dweight_only = Tensor::zeros(w_shape), dbias_only = Tensor::zeros({s.OC});
  conv2d_backward(dx_only.data(), nullptr, nullptr, dout.data(), x.data(), weight.data(), s);
  conv2d_backward(nullptr, dweight_only.data(), nullptr, dout.data(), x.data(), weight.data(), s);
  conv2d_backward(nullptr, nullptr, dbias_only.data(), dout.data(), x.data(), weight.data(), s);
  Tensor dx_zero = Tensor::zeros(x_shape), dweight_zero = Tensor::zeros(w_shape), dbias_zero = Tensor::zeros({s.OC});
  conv2d_backward_ref(dx_zero.data(), dweight_zero.data(), dbias_zero.data(), dout.data(), x.data(), weight.data(),
                      s);
  testing::check_allclose("conv2d dx alone", dx_only, dx_zero, dx_atol, 1e-4);
  testing::check_allclose("conv2d dweight alone", dweight_only, dweight_zero, batch_atol, 1e-4);
  testing::check_allclose("conv2d dbias alone", dbias_only, dbias_zero, batch_atol, 1e-4);
}

}  // namespace

TEST_CASE("conv2d: kernels match their double twins at awkward sizes") {
  struct Channels {
    int64_t C, OC;
  };
  struct Spatial {
    int64_t N, H, W;
  };
  uint64_t seed = 100;
  for (const Config& cfg : kConfigs)
    for (Channels ch : {Channels{1, 3}, Channels{3, 17}, Channels{17, 1}})
      for (Spatial sp : {Spatial{3, 1, 1}, Spatial{3, 5, 7}, Spatial{2, 28, 28}}) {
        const Conv2dSize s{sp.N, ch.C, sp.H, sp.W, ch.OC, cfg.K, cfg.stride, cfg.pad};
        if (s.H + 2 * s.pad < s.K || s.W + 2 * s.pad < s.K) continue;  // empty output: rejected by conv2d()
        CAPTURE(s.N);
        CAPTURE(s.C);
        CAPTURE(s.H);
        CAPTURE(s.W);
        CAPTURE(s.OC);
        CAPTURE(s.K);
        CAPTURE(s.stride);
        CAPTURE(s.pad);
        check_against_ref(s, seed);
        seed += 10;
      }
}

// The three U-Net configurations at sizes whose batch of 10 spans several partial-sum blocks.
static const Conv2dSize kMultiBlock[] = {
    {10, 17, 28, 28, 4, 3, 1, 1}, {10, 64, 28, 28, 4, 3, 2, 1}, {10, 256, 28, 28, 3, 1, 1, 0},
    // Too few images to share out: one at a time, each GEMM split across threads.
    {2, 17, 14, 14, 40, 3, 1, 1}};

TEST_CASE("conv2d: kernels match their twins when the batch spans several partial-sum blocks") {
  for (const Conv2dSize& s : kMultiBlock) {
    CAPTURE(s.K);
    CAPTURE(s.stride);
    REQUIRE(conv2d_images_per_block(s) < s.N);  // else this test covers nothing new
    check_against_ref(s, 7);
  }
}

TEST_CASE("conv2d: forward and backward are bit-identical at 1, 2 and 3 threads") {
  for (const Conv2dSize& s : kMultiBlock) {
    CAPTURE(s.K);
    CAPTURE(s.stride);
    REQUIRE(conv2d_images_per_block(s) < s.N);  // several blocks, summed in order
    const Shape x_shape{s.N, s.C, s.H, s.W}, w_shape{s.OC, s.C, s.K, s.K}, out_shape{s.N, s.OC, s.OH(), s.OW()};
    Tensor x = randn(x_shape, 1), weight = randn(w_shape, 2), bias = randn({s.OC}, 3), dout = randn(out_shape, 4);
    std::vector<float> first_out, first_dx, first_dweight, first_dbias;
    for (int threads : {1, 2, 3}) {
      CAPTURE(threads);
      set_num_threads(threads);
      Tensor out(out_shape), dx(x_shape), dweight(w_shape), dbias(Shape{s.OC});
      conv2d_forward(out.data(), x.data(), weight.data(), bias.data(), s);
      conv2d_backward(dx.data(), dweight.data(), dbias.data(), dout.data(), x.data(), weight.data(), s);
      if (first_out.empty()) {
        first_out = out.to_vector();
        first_dx = dx.to_vector();
        first_dweight = dweight.to_vector();
        first_dbias = dbias.to_vector();
      }
      CHECK(out.to_vector() == first_out);
      CHECK(dx.to_vector() == first_dx);
      CHECK(dweight.to_vector() == first_dweight);
      CHECK(dbias.to_vector() == first_dbias);
    }
  }
  set_num_threads(1);
}

TEST_CASE("conv2d: gradients match finite differences of the double twin for k3s1, k3s2 and k1") {
  auto check = [](const char* name, const Conv2dSize& s, bool has_bias, uint64_t seed) {
    auto op = [s, has_bias](Tape& t, const std::vector<Var>& v) {
      return conv2d(t, v[0], v[1], has_bias ? v[2] : Var(), s.stride, s.pad);
    };
    auto twin = [s, has_bias](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
      conv2d_forward_ref(out.data(), in[0].data(), in[1].data(), has_bias ? in[2].data() : nullptr, s);
    };
    std::vector<Tensor> inputs = {randn({s.N, s.C, s.H, s.W}, seed), randn({s.OC, s.C, s.K, s.K}, seed + 1)};
    if (has_bias) inputs.push_back(randn({s.OC}, seed + 2));
    // Each entry is a float32 sum of at most ~60 products of N(0, 1) values (typical
    // entry ~5): its rounding is ~1e-7 * sqrt(terms) * |terms| ~ 1e-6 absolute at worst.
    gradcheck_twin(name, op, twin, inputs, GradTol{2e-6, 1e-5});
  };
  check("conv2d k3s1", Conv2dSize{2, 3, 5, 6, 4, 3, 1, 1}, true, 1);
  check("conv2d k3s2", Conv2dSize{2, 2, 5, 7, 3, 3, 2, 1}, true, 4);
  check("conv2d k1", Conv2dSize{2, 3, 4, 3, 5, 1, 1, 0}, true, 7);
  check("conv2d k3s1 no bias", Conv2dSize{1, 2, 4, 4, 2, 3, 1, 1}, false, 10);
}

TEST_CASE("conv2d: hand-computed values") {
  // x = 1..9 as a 3x3 image; every value below is integer + 0.5, exact in float.
  const Tensor x = Tensor::from({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tape tape;
  Var xv = variable(x.clone());
  Var ones = variable(Tensor::full({1, 1, 3, 3}, 1.0f)), half = variable(Tensor::full({1}, 0.5f));

  // A 3x3 box sum with pad 1: each output is the sum of its in-image neighbours + 0.5.
  Var box = conv2d(tape, xv, ones, half, 1, 1);
  REQUIRE(box->value.shape() == Shape{1, 1, 3, 3});
  CHECK(box->value.to_vector() == std::vector<float>{12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5});

  // Backward with dout = 1: dx counts the windows covering each pixel, dweight[i, j]
  // sums the pixels tap (i, j) sees (the same box sums), dbias counts outputs.
  tape.backward(box, Tensor::full({1, 1, 3, 3}, 1.0f));
  CHECK(xv->grad.to_vector() == std::vector<float>{4, 6, 4, 6, 9, 6, 4, 6, 4});
  CHECK(ones->grad.to_vector() == std::vector<float>{12, 21, 16, 27, 45, 33, 24, 39, 28});
  CHECK(half->grad.to_vector() == std::vector<float>{9});

  // Stride 2 keeps outputs (0, 0), (0, 2), (2, 0), (2, 2) of the box sum.
  Tape t2 = Tape::no_grad();
  CHECK(conv2d(t2, xv, ones, half, 2, 1)->value.to_vector() == std::vector<float>{12.5, 16.5, 24.5, 28.5});

  // Cross-correlation, not convolution: tap (1, 2) reads the right neighbour,
  // out[y, x] = in[y, x + 1] (0 past the right edge). A flipped kernel would read the left.
  Var right = constant(Tensor::from({1, 1, 3, 3}, {0, 0, 0, 0, 0, 1, 0, 0, 0}));
  CHECK(conv2d(t2, xv, right, Var(), 1, 1)->value.to_vector() == std::vector<float>{2, 3, 0, 5, 6, 0, 8, 9, 0});

  // 1x1 conv mixes channels: out[o] = sum over c of w[o, c] in[c] + b[o].
  Var x2 = constant(Tensor::from({1, 2, 1, 2}, {1, 2, 3, 4}));
  Var w2 = constant(Tensor::from({2, 2, 1, 1}, {1, 10, 100, 1000}));
  Var b2 = constant(Tensor::from({2}, {0.5, -1}));
  CHECK(conv2d(t2, x2, w2, b2, 1, 0)->value.to_vector() == std::vector<float>{31.5, 42.5, 3099, 4199});
}

TEST_CASE("conv2d: shape errors name the op") {
  Tape tape;
  Var x = constant(Tensor({2, 3, 5, 5})), w = constant(Tensor({4, 3, 3, 3})), b = constant(Tensor({4}));
  CHECK(conv2d(tape, x, w, b, 1, 1)->value.shape() == Shape{2, 4, 5, 5});
  CHECK(conv2d(tape, x, w, b, 2, 1)->value.shape() == Shape{2, 4, 3, 3});
  CHECK(conv2d(tape, x, w, Var(), 1, 0)->value.shape() == Shape{2, 4, 3, 3});
  CHECK_THROWS_AS(conv2d(tape, constant(Tensor({3, 5, 5})), w, b, 1, 1), Error);          // x not 4-D
  CHECK_THROWS_AS(conv2d(tape, x, constant(Tensor({4, 2, 3, 3})), b, 1, 1), Error);       // C mismatch
  CHECK_THROWS_AS(conv2d(tape, x, constant(Tensor({4, 3, 3, 2})), b, 1, 1), Error);       // not square
  CHECK_THROWS_AS(conv2d(tape, x, constant(Tensor({4, 3, 3})), b, 1, 1), Error);          // weight not 4-D
  CHECK_THROWS_AS(conv2d(tape, x, w, constant(Tensor({5})), 1, 1), Error);                // bias size
  CHECK_THROWS_AS(conv2d(tape, x, w, constant(Tensor({1, 4})), 1, 1), Error);             // bias rank
  CHECK_THROWS_AS(conv2d(tape, constant(Tensor({1, 3, 1, 1})), w, b, 1, 0), Error);       // empty output
  CHECK_THROWS_AS(conv2d(tape, x, w, b, 0, 1), Error);                                    // stride 0
  CHECK_THROWS_AS(conv2d(tape, x, w, b, 1, -1), Error);                                   // negative pad
  try {
    conv2d(tape, x, constant(Tensor({4, 2, 3, 3})), b, 1, 1);
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("conv2d") != std::string::npos);
    CHECK(what.find("[4, 2, 3, 3]") != std::string::npos);
    CHECK(what.find("[2, 3, 5, 5]") != std::string::npos);
  }
}

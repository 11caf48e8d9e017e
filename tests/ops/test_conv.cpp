#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/conv.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/ops/shape.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/simd.h"
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

// ---------------------------------------------------------------------------
// Inference: tap planes and the direct convolution (conv2d_planes_forward).

namespace {

// The planes' stored floats (the slack aside) of channel c, for comparing two writers.
std::vector<float> stored_floats(const float* channel, const ConvPlanes& p) {
  const int64_t rows = p.planes == 3 ? (p.H + 2) * p.W : p.P();
  std::vector<float> v;
  for (int64_t t = 0; t < p.planes; t++) v.insert(v.end(), channel + t * p.plane_floats, channel + t * p.plane_floats + rows);
  return v;
}

// One image [C, H, W] through conv2d_planes_forward, against conv2d_forward followed by the
// tape's adds (bit for bit) and against the double twin (within rounding); temb, residual
// and in place as asked.
void check_planes_conv(int64_t C, int64_t OC, int64_t H, int64_t W, int64_t K, int64_t stride, int64_t pad,
                       bool with_temb, bool with_residual, bool in_place, uint64_t seed) {
  CAPTURE(C);
  CAPTURE(OC);
  CAPTURE(H);
  CAPTURE(W);
  CAPTURE(K);
  CAPTURE(stride);
  CAPTURE(with_temb);
  CAPTURE(with_residual);
  CAPTURE(in_place);
  const ConvPlanes p = conv2d_planes(C, H, W, K, stride, pad);
  const int64_t P = p.P(), CKK = C * K * K;
  const Conv2dSize s{1, C, H, W, OC, K, stride, pad};
  REQUIRE(P == s.OH() * s.OW());
  Tensor x = randn({C * H * W + kConvSlack}, seed), weight = randn({OC, C, K, K}, seed + 1),
         bias = randn({OC}, seed + 2), temb = randn({OC}, seed + 3), residual = randn({OC * P}, seed + 4);
  // The input: planes, or the image itself (with the slack the kernel may read).
  Tensor planes = Tensor::full({C * p.channel_floats()}, 1e30f);  // slack poisoned: read only into unstored lanes
  std::vector<const float*> in(C);
  for (int64_t c = 0; c < C; c++) {
    if (K == 1) {
      in[c] = x.data() + c * H * W;
      continue;
    }
    conv2d_write_planes(planes.data() + c * p.channel_floats(), x.data() + c * H * W, p);
    in[c] = planes.data() + c * p.channel_floats();
    Tensor want = Tensor::full({p.channel_floats()}, 1e30f);
    conv2d_write_planes_ref(want.data(), x.data() + c * H * W, p, false);
    CHECK(stored_floats(in[c], p) == stored_floats(want.data(), p));
  }
  Tensor packed({OC * CKK});
  conv2d_pack_weights(packed.data(), weight.data(), OC, CKK);
  ConvEpilogue e;
  if (with_temb) e.temb = temb.data();
  Tensor out = Tensor::full({OC * P + kConvSlack}, -3.0f);
  if (with_residual) {
    if (in_place) std::copy(residual.data(), residual.data() + OC * P, out.data());
    e.residual = in_place ? out.data() : residual.data();
  }
  conv2d_planes_forward(out.data(), in.data(), p, packed.data(), bias.data(), OC, e);
  for (int64_t i = OC * P; i < OC * P + kConvSlack; i++) REQUIRE(out[i] == -3.0f);  // nothing past [OC, P]

  // The training pass's ops: conv2d, then add(h, temb[o]) over the positions, then add(residual, h).
  Tensor want({std::max<int64_t>(1, OC * P)});
  conv2d_forward(want.data(), x.data(), weight.data(), bias.data(), s);
  if (with_temb) add_channel_forward(want.data(), want.data(), temb.data(), OC, P);
  if (with_residual)
    for (int64_t i = 0; i < OC * P; i++) want[i] = residual[i] + want[i];
  CHECK(std::equal(out.data(), out.data() + OC * P, want.data()));

  // The double twin, on the same planes.
  Tensor ref({std::max<int64_t>(1, OC * P)});
  ConvEpilogue er = e;
  if (with_residual) er.residual = residual.data();
  conv2d_planes_forward_ref(ref.data(), in.data(), p, weight.data(), bias.data(), OC, er);
  // A sum of CKK products of N(0,1) values, in float against double (as conv2d's bound).
  testing::check_allclose("conv2d_planes_forward", out.data(), ref.data(), OC * P, 1e-6 * (1 + CKK + 2), 1e-4);
}

}  // namespace

TEST_CASE("conv2d_planes: the direct convolution at awkward sizes equals conv2d and its adds bit for bit") {
  const int64_t L = simd::kLanes, MR = kConvMR;
  struct Config {
    int64_t K, stride, pad;
  };
  // Positions P = 1, lanes - 1, lanes, lanes + 1, + 2, + 3 (the few past the last vector go along
  // the channels), one tile + 1 and large, as one row, plus the U-Net's images.
  std::vector<std::pair<int64_t, int64_t>> images;
  for (int64_t P : {int64_t(1), L > 1 ? L - 1 : 2, L, L + 1, L + 2, 2 * L + 3, 3 * L + 1, int64_t(200)})
    images.push_back({1, P});
  for (int64_t side : {7, 14, 28}) images.push_back({side, side});
  images.push_back({5, 3});
  uint64_t seed = 500;
  for (const Config& cfg : {Config{1, 1, 0}, Config{3, 1, 1}, Config{3, 2, 1}})
    for (const auto& hw : images)
      for (int64_t OC : {int64_t(0), int64_t(1), int64_t(3), MR - 1, MR, MR + 1, int64_t(2 * MR + 3)}) {
        if (OC > 3 && hw.first * hw.second > 200) continue;  // the large images with a few channel counts
        const int64_t C = (seed % 3 == 0) ? 1 : (seed % 3 == 1 ? 3 : 17);
        const bool temb = seed % 2 == 0, residual = seed % 4 < 2, in_place = seed % 8 < 4;
        check_planes_conv(C, OC, hw.first, hw.second, cfg.K, cfg.stride, cfg.pad, temb, residual, in_place, seed);
        seed += 7;
      }
  // The U-Net's shapes, all epilogues.
  check_planes_conv(32, 32, 28, 28, 3, 1, 1, true, false, false, 900);
  check_planes_conv(96, 32, 28, 28, 1, 1, 0, false, false, false, 901);
  check_planes_conv(64, 64, 7, 7, 3, 1, 1, false, true, true, 902);
  check_planes_conv(32, 32, 28, 28, 3, 2, 1, false, true, false, 903);
}

TEST_CASE("conv2d_planes: the Upsample planes are upsample_nearest2x's image, and the conv on them matches") {
  for (int64_t side : {1, 2, 7}) {
    CAPTURE(side);
    const int64_t C = 3, OC = 5, H = 2 * side, W = 2 * side;
    Tensor x = randn({C, side, side}, 40 + side), up({C, H, W}), weight = randn({OC, C, 3, 3}, 41), bias = randn({OC}, 42);
    upsample_nearest2x_forward(up.data(), x.data(), C, side, side);
    const ConvPlanes p = conv2d_planes(C, H, W, 3, 1, 1);
    Tensor planes({C * p.channel_floats()}), want({p.channel_floats()});
    std::vector<const float*> in(C);
    for (int64_t c = 0; c < C; c++) {
      conv2d_write_planes_upsampled(planes.data() + c * p.channel_floats(), x.data() + c * side * side, p);
      conv2d_write_planes_ref(want.data(), x.data() + c * side * side, p, true);
      CHECK(stored_floats(planes.data() + c * p.channel_floats(), p) == stored_floats(want.data(), p));
      in[c] = planes.data() + c * p.channel_floats();
    }
    Tensor packed({OC * C * 9}), out({OC * H * W}), ref({OC * H * W});
    conv2d_pack_weights(packed.data(), weight.data(), OC, C * 9);
    conv2d_planes_forward(out.data(), in.data(), p, packed.data(), bias.data(), OC);
    conv2d_forward(ref.data(), up.data(), weight.data(), bias.data(), Conv2dSize{1, C, H, W, OC, 3, 1, 1});
    CHECK(out.to_vector() == ref.to_vector());
  }
}

TEST_CASE("conv2d_upsampled: the four 2x2 phase convolutions equal conv2d on the upsampled image, within rounding") {
  struct Case {
    int64_t C, OC, H, W;
  };
  // Images with 0..4 positions past a whole vector (7x7 = 3 x 16 + 1, 14x14 = 12 x 16 + 4 on AVX-512).
  for (Case k : {Case{1, 1, 1, 1}, Case{3, 5, 2, 3}, Case{17, 8, 5, 4}, Case{4, 19, 7, 7}, Case{64, 16, 14, 14}}) {
    CAPTURE(k.C);
    CAPTURE(k.OC);
    CAPTURE(k.H);
    CAPTURE(k.W);
    const int64_t H2 = 2 * k.H, W2 = 2 * k.W;
    Tensor x = randn({k.C, k.H, k.W}, 60 + k.C), weight = randn({k.OC, k.C, 3, 3}, 61), bias = randn({k.OC}, 62);
    Tensor up({k.C, H2, W2});
    upsample_nearest2x_forward(up.data(), x.data(), k.C, k.H, k.W);
    const ConvPlanes p = conv2d_planes(k.C, k.H, k.W, 3, 1, 1);
    Tensor planes({k.C * p.channel_floats()}), packed({16 * k.OC * k.C}), out = Tensor::full({k.OC * H2 * W2 + 1}, -5.0f);
    std::vector<const float*> in(k.C);
    for (int64_t c = 0; c < k.C; c++) {
      conv2d_write_planes(planes.data() + c * p.channel_floats(), x.data() + c * k.H * k.W, p);
      in[c] = planes.data() + c * p.channel_floats();
    }
    conv2d_pack_upsampled_weights(packed.data(), weight.data(), k.OC, k.C);
    conv2d_upsampled_forward(out.data(), in.data(), p, packed.data(), bias.data(), k.OC);
    CHECK(out[k.OC * H2 * W2] == -5.0f);  // nothing written past [OC, 2H, 2W]
    const Conv2dSize s{1, k.C, H2, W2, k.OC, 3, 1, 1};
    Tensor ref({k.OC * H2 * W2}), conv({k.OC * H2 * W2});
    conv2d_forward_ref(ref.data(), up.data(), weight.data(), bias.data(), s);
    conv2d_forward(conv.data(), up.data(), weight.data(), bias.data(), s);
    // Against double: a float chain of 4C terms with summed weights, as conv2d's bound
    // (1e-6 per term of N(0,1) products, with weights up to 4x larger). Against conv2d in
    // float: both round, so twice that.
    const double atol = 4e-6 * (1 + 9 * k.C);
    testing::check_allclose("upsampled vs double", out.data(), ref.data(), k.OC * H2 * W2, atol, 1e-4);
    testing::check_allclose("upsampled vs conv2d", out.data(), conv.data(), k.OC * H2 * W2, 2 * atol, 2e-4);
  }
}

TEST_CASE("conv2d_planes: layouts other than 1x1 and 3x3 pad 1 are refused") {
  CHECK_NOTHROW(conv2d_planes(2, 5, 5, 3, 2, 1));
  CHECK_THROWS_AS(conv2d_planes(2, 5, 5, 3, 1, 0), Error);
  CHECK_THROWS_AS(conv2d_planes(2, 5, 5, 5, 1, 2), Error);
  CHECK_THROWS_AS(conv2d_planes(2, 5, 5, 1, 2, 0), Error);
  CHECK_THROWS_AS(conv2d_planes(0, 5, 5, 3, 1, 1), Error);
  Tensor planes({64});
  CHECK_THROWS_AS(conv2d_write_planes(planes.data(), planes.data(), conv2d_planes(1, 2, 2, 1, 1, 0)), Error);
  CHECK_THROWS_AS(conv2d_write_planes_upsampled(planes.data(), planes.data(), conv2d_planes(1, 3, 3, 3, 1, 1)), Error);
}

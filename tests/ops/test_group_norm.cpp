#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/ops/group_norm.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/simd.h"
#include "ddpm/ops/conv.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck_twin;
using testing::GradTol;
using testing::randn;

TEST_CASE("group_norm: kernels match their double twins") {
  struct Case {
    int64_t N, C, HW, G;
  };
  for (Case s : {Case{1, 1, 1, 1}, Case{2, 4, 9, 2}, Case{3, 6, 17, 3}, Case{2, 32, 49, 8}, Case{1, 8, 1, 8}}) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.HW);
    CAPTURE(s.G);
    const int64_t n = s.N * s.C * s.HW;
    Tensor x = randn({n}, 1, 2.0f), gamma = randn({s.C}, 2), beta = randn({s.C}, 3), dout = randn({n}, 4);
    for (int64_t i = 0; i < n; i++) x[i] += 0.5f;  // a nonzero mean
    Tensor out({n}), mean({s.N * s.G}), rstd({s.N * s.G});
    Tensor out_ref({n}), mean_ref({s.N * s.G}), rstd_ref({s.N * s.G});
    group_norm_forward(out.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(), s.N, s.C, s.HW,
                       s.G, 1e-5f);
    group_norm_forward_ref(out_ref.data(), mean_ref.data(), rstd_ref.data(), x.data(), gamma.data(), beta.data(),
                           s.N, s.C, s.HW, s.G, 1e-5f);
    // Statistics: double against float lanes over short chunks, refined by a centred
    // second pass; both round once: equal to about 1 ulp. The output
    // is (x - mean) * rstd * gamma in float against double: a few ulps of |out| <~ 10.
    testing::check_allclose("mean", mean, mean_ref, 1e-7, 1e-6);
    testing::check_allclose("rstd", rstd, rstd_ref, 0, 1e-6);
    testing::check_allclose("out", out, out_ref, 1e-5, 1e-5);

    // Backward adds: start every gradient from the same nonzero values.
    Tensor dx = Tensor::full({n}, 0.25f), dgamma = Tensor::full({s.C}, -1.0f), dbeta = Tensor::full({s.C}, 2.0f);
    Tensor dx_ref = dx.clone(), dgamma_ref = dgamma.clone(), dbeta_ref = dbeta.clone();
    group_norm_backward(dx.data(), dgamma.data(), dbeta.data(), dout.data(), x.data(), mean.data(), rstd.data(),
                        gamma.data(), s.N, s.C, s.HW, s.G);
    group_norm_backward_ref(dx_ref.data(), dgamma_ref.data(), dbeta_ref.data(), dout.data(), x.data(), mean.data(),
                            rstd.data(), gamma.data(), s.N, s.C, s.HW, s.G);
    // dx is a float difference of terms of size |dout * gamma| ~ 3; rounding ~1e-6 of that.
    testing::check_allclose("dx", dx, dx_ref, 1e-5, 1e-5);
    // dgamma/dbeta are double sums on both sides; xhat is rounded to float in the kernel.
    testing::check_allclose("dgamma", dgamma, dgamma_ref, 1e-5, 1e-5);
    testing::check_allclose("dbeta", dbeta, dbeta_ref, 1e-5, 1e-5);

    // Null outputs are skipped, and dx alone is the same dx.
    Tensor dx_only = Tensor::full({n}, 0.25f);
    group_norm_backward(dx_only.data(), nullptr, nullptr, dout.data(), x.data(), mean.data(), rstd.data(),
                        gamma.data(), s.N, s.C, s.HW, s.G);
    CHECK(dx_only.to_vector() == dx.to_vector());
    Tensor dgamma_only = Tensor::full({s.C}, -1.0f);
    group_norm_backward(nullptr, dgamma_only.data(), nullptr, dout.data(), x.data(), mean.data(), rstd.data(),
                        gamma.data(), s.N, s.C, s.HW, s.G);
    CHECK(dgamma_only.to_vector() == dgamma.to_vector());
  }
}

TEST_CASE("group_norm: output has per-group mean 0 and variance 1 before the affine") {
  const int64_t N = 2, C = 6, H = 5, W = 3, G = 3, M = C / G * H * W;
  Tensor x = randn({N, C, H, W}, 5, 3.0f);
  for (int64_t i = 0; i < x.numel(); i++) x[i] += 1000.0f;  // a large mean must not spoil the variance
  Tape tape = Tape::no_grad();
  Var y = group_norm(tape, constant(x), constant(Tensor::full({C}, 1.0f)), constant(Tensor({C})), G);
  for (int64_t ng = 0; ng < N * G; ng++) {
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < M; i++) s += y->value[ng * M + i];
    const double mu = s / M;
    for (int64_t i = 0; i < M; i++) ss += (y->value[ng * M + i] - mu) * (y->value[ng * M + i] - mu);
    // x near 1000 in float carries ~6e-5 absolute rounding against a std of 3, i.e.
    // ~2e-5 relative per value; the mean of M = 30 such errors is smaller still.
    CHECK(std::fabs(mu) < 1e-5);
    // var(y) = var / (var + eps) = 1 - ~1e-6 for var ~ 9.
    CHECK(std::fabs(ss / M - 1.0) < 1e-4);
  }
}

TEST_CASE("group_norm: matches values computed by PyTorch") {
  // Produced with /usr/bin/python3 (torch 1.13):
  //   x[i] = sin(0.7 i) * 2 + 0.1 i, gamma[c] = 0.5 + 0.25 c, beta[c] = 0.1 c - 0.2,
  //   dout[i] = cos(0.3 i) (all built in double, then rounded to float32),
  //   y = F.group_norm(x.view(1, 4, 2, 2), 2, gamma, beta, 1e-5); y.backward(dout)
  std::vector<float> xs(16), dos(16), gs(4), bs(4);
  for (int i = 0; i < 16; i++) {
    xs[i] = static_cast<float>(std::sin(0.7 * i) * 2 + 0.1 * i);
    dos[i] = static_cast<float>(std::cos(0.3 * i));
  }
  for (int c = 0; c < 4; c++) {
    gs[c] = static_cast<float>(0.5 + 0.25 * c);
    bs[c] = static_cast<float>(0.1 * c - 0.2);
  }
  const std::vector<float> y_torch = {-0.3999760150909424, 0.14900361001491547, 0.45838555693626404,
                                      0.4012586772441864,  0.2346300631761551,  -0.519511342048645,
                                      -1.0779576301574707, -1.1501686573028564, -1.4424325227737427,
                                      -0.355083167552948,  0.7199487686157227,  1.3136876821517944,
                                      1.5793973207473755,  0.6341111660003662,  -0.6033801436424255,
                                      -1.5052788257598877};
  const std::vector<float> dx_torch = {0.3243018686771393,    0.10102598369121552,   -0.06625233590602875,
                                       -0.1254078596830368,   -0.01463615894317627,  0.0007114484906196594,
                                       -0.03655262663960457,  -0.1831902265548706,   -0.17181596159934998,
                                       -0.12627938389778137,  -0.01983359456062317,  0.07787081599235535,
                                       -0.0470675528049469,   -0.0027163028717041016, 0.0670657753944397,
                                       0.22277623414993286};
  const std::vector<float> dgamma_torch = {2.1011548042297363, 1.1252645254135132, -0.6253223419189453,
                                           -0.8249319791793823};
  const std::vector<float> dbeta_torch = {3.4022819995880127, -0.29895320534706116, -3.6189379692077637,
                                          -2.323747396469116};
  Tape tape;
  Var x = variable(Tensor::from({1, 4, 2, 2}, xs)), gamma = variable(Tensor::from({4}, gs));
  Var beta = variable(Tensor::from({4}, bs));
  Var y = group_norm(tape, x, gamma, beta, 2);
  tape.backward(y, Tensor::from({1, 4, 2, 2}, dos));
  // float32 against float32 computed in a different order: a few ulps of values ~1.
  testing::check_allclose("y", y->value.data(), y_torch.data(), 16, 1e-6, 1e-5);
  testing::check_allclose("dx", x->grad.data(), dx_torch.data(), 16, 1e-6, 1e-5);
  testing::check_allclose("dgamma", gamma->grad.data(), dgamma_torch.data(), 4, 1e-6, 1e-5);
  testing::check_allclose("dbeta", beta->grad.data(), dbeta_torch.data(), 4, 1e-6, 1e-5);
}

TEST_CASE("group_norm: gradients of x, gamma and beta match finite differences") {
  // Against the double twin (PyTorch's eps = 1e-5). dx subtracts two group sums of ~M
  // terms from dout * gamma * rstd, so entries near zero keep ~1e-7 of the group's
  // largest terms (~1e-6 absolute); dgamma and dbeta are sums over N * HW <= 18 terms.
  auto check = [](const char* name, int64_t N, int64_t C, int64_t HW, int64_t G, const std::vector<Tensor>& in) {
    auto op = [G](Tape& t, const std::vector<Var>& v) { return group_norm(t, v[0], v[1], v[2], G); };
    auto twin = [=](std::vector<double>& out, const std::vector<std::vector<double>>& x) {
      std::vector<double> mean(N * G), rstd(N * G);
      group_norm_forward_ref(out.data(), mean.data(), rstd.data(), x[0].data(), x[1].data(), x[2].data(), N, C, HW,
                             G, 1e-5f);
    };
    gradcheck_twin(name, op, twin, in, GradTol{2e-6, 1e-5});
  };
  check("group_norm G=2", 2, 4, 9, 2, {randn({2, 4, 3, 3}, 6), randn({4}, 7), randn({4}, 8)});
  check("group_norm G=1", 1, 3, 10, 1, {randn({1, 3, 2, 5}, 9, 2.0f), randn({3}, 10), randn({3}, 11)});
  check("group_norm 3-D, G=C", 2, 3, 4, 3, {randn({2, 3, 4}, 12), randn({3}, 13), randn({3}, 14)});
}

TEST_CASE("group_norm: forward and backward are bit-identical at 1, 2 and 3 threads") {
  const int64_t N = 5, C = 12, H = 7, W = 6, G = 4;
  Tensor x = randn({N, C, H, W}, 15), gamma = randn({C}, 16), beta = randn({C}, 17), dout = randn({N, C, H, W}, 18);
  std::vector<float> y1, dx1, dgamma1, dbeta1;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tape tape;
    Var xv = variable(x.clone()), gv = variable(gamma.clone()), bv = variable(beta.clone());
    Var y = group_norm(tape, xv, gv, bv, G);
    tape.backward(y, dout);
    if (threads == 1) {
      y1 = y->value.to_vector();
      dx1 = xv->grad.to_vector();
      dgamma1 = gv->grad.to_vector();
      dbeta1 = bv->grad.to_vector();
      continue;
    }
    CAPTURE(threads);
    CHECK(y->value.to_vector() == y1);
    CHECK(xv->grad.to_vector() == dx1);
    CHECK(gv->grad.to_vector() == dgamma1);
    CHECK(bv->grad.to_vector() == dbeta1);
  }
  set_num_threads(1);
}

TEST_CASE("group_norm: shape errors") {
  Tape tape;
  Var x = constant(Tensor({2, 6, 3, 3}));
  Var g6 = constant(Tensor({6})), g4 = constant(Tensor({4}));
  CHECK_THROWS_AS(group_norm(tape, x, g6, g6, 4), Error);   // 6 channels, 4 groups
  CHECK_THROWS_AS(group_norm(tape, x, g6, g6, 0), Error);   // no groups
  CHECK_THROWS_AS(group_norm(tape, x, g4, g6, 2), Error);   // gamma of the wrong size
  CHECK_THROWS_AS(group_norm(tape, x, g6, g4, 2), Error);   // beta of the wrong size
  CHECK_THROWS_AS(group_norm(tape, constant(Tensor({6})), g6, g6, 2), Error);  // no batch dimension
  CHECK_THROWS_AS(group_norm(tape, x, g6, g6, 2, 0.0f), Error);                // eps must be > 0
  CHECK_NOTHROW(group_norm(tape, x, g6, g6, 3));
}

TEST_CASE("group_norm_silu: kernels match their double twins and the unfused ops bit for bit") {
  struct Case {
    int64_t N, C, HW, G;
  };
  for (Case s : {Case{1, 1, 1, 1}, Case{2, 4, 9, 2}, Case{3, 6, 17, 3}, Case{2, 32, 49, 8}}) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.HW);
    CAPTURE(s.G);
    const int64_t n = s.N * s.C * s.HW;
    const Shape shape{s.N, s.C, s.HW};
    Tensor x = randn(shape, 21, 2.0f), gamma = randn({s.C}, 22), beta = randn({s.C}, 23), dout = randn(shape, 24);
    Tensor out(shape), mean({s.N * s.G}), rstd({s.N * s.G}), out_ref(shape), mean_ref({s.N * s.G}),
        rstd_ref({s.N * s.G});
    group_norm_silu_forward(out.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(), s.N, s.C, s.HW,
                            s.G, 1e-5f);
    group_norm_silu_forward_ref(out_ref.data(), mean_ref.data(), rstd_ref.data(), x.data(), gamma.data(), beta.data(),
                                s.N, s.C, s.HW, s.G, 1e-5f);
    // As group_norm's forward (a few ulps of |y| <~ 10), then silu's (at most 2 ulp).
    testing::check_allclose("out", out, out_ref, 2e-5, 2e-5);
    Tensor dx = Tensor::full(shape, 0.25f), dgamma = Tensor::full({s.C}, -1.0f), dbeta = Tensor::full({s.C}, 2.0f);
    Tensor dx_ref = dx.clone(), dgamma_ref = dgamma.clone(), dbeta_ref = dbeta.clone();
    group_norm_silu_backward(dx.data(), dgamma.data(), dbeta.data(), dout.data(), x.data(), mean.data(), rstd.data(),
                             gamma.data(), beta.data(), s.N, s.C, s.HW, s.G);
    group_norm_silu_backward_ref(dx_ref.data(), dgamma_ref.data(), dbeta_ref.data(), dout.data(), x.data(),
                                 mean.data(), rstd.data(), gamma.data(), beta.data(), s.N, s.C, s.HW, s.G);
    // group_norm's backward bounds, on dy = dout * silu'(y) (|silu'| < 1.1).
    testing::check_allclose("dx", dx, dx_ref, 2e-5, 2e-5);
    testing::check_allclose("dgamma", dgamma, dgamma_ref, 2e-5, 2e-5);
    testing::check_allclose("dbeta", dbeta, dbeta_ref, 2e-5, 2e-5);

    // The fused op on the tape equals silu(group_norm(x)) exactly: same kernels, same order.
    Var xf = variable(x.clone()), gf = variable(gamma.clone()), bf = variable(beta.clone());
    Var xu = variable(x.clone()), gu = variable(gamma.clone()), bu = variable(beta.clone());
    Tape tf, tu;
    Var yf = group_norm_silu(tf, xf, gf, bf, s.G);
    Var yu = silu(tu, group_norm(tu, xu, gu, bu, s.G));
    tf.backward(yf, dout);
    tu.backward(yu, dout);
    CHECK(yf->value.to_vector() == yu->value.to_vector());
    CHECK(xf->grad.to_vector() == xu->grad.to_vector());
    CHECK(gf->grad.to_vector() == gu->grad.to_vector());
    CHECK(bf->grad.to_vector() == bu->grad.to_vector());
    CHECK(n == yf->value.numel());
  }
}

TEST_CASE("group_norm_silu: gradients match finite differences; bit-identical at 1, 2 and 3 threads") {
  // Against the double twin, with group_norm's tolerance (silu' is at most 1.1).
  gradcheck_twin(
      "group_norm_silu G=2", [](Tape& t, const std::vector<Var>& v) { return group_norm_silu(t, v[0], v[1], v[2], 2); },
      [](std::vector<double>& out, const std::vector<std::vector<double>>& x) {
        std::vector<double> mean(2 * 2), rstd(2 * 2);
        group_norm_silu_forward_ref(out.data(), mean.data(), rstd.data(), x[0].data(), x[1].data(), x[2].data(), 2, 4,
                                    9, 2, 1e-5f);
      },
      {randn({2, 4, 3, 3}, 25), randn({4}, 26), randn({4}, 27)}, GradTol{2e-6, 1e-5});
  const int64_t N = 5, C = 12, H = 7, W = 6, G = 4;
  Tensor x = randn({N, C, H, W}, 28), gamma = randn({C}, 29), beta = randn({C}, 30), dout = randn({N, C, H, W}, 31);
  std::vector<float> y1, dx1, dgamma1;
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    set_num_threads(threads);
    Tape tape;
    Var xv = variable(x.clone()), gv = variable(gamma.clone()), bv = variable(beta.clone());
    Var y = group_norm_silu(tape, xv, gv, bv, G);
    tape.backward(y, dout);
    if (threads == 1) {
      y1 = y->value.to_vector();
      dx1 = xv->grad.to_vector();
      dgamma1 = gv->grad.to_vector();
    }
    CHECK(y->value.to_vector() == y1);
    CHECK(xv->grad.to_vector() == dx1);
    CHECK(gv->grad.to_vector() == dgamma1);
  }
  set_num_threads(1);
  Tape tape;
  CHECK_THROWS_AS(group_norm_silu(tape, constant(Tensor({2, 6, 3, 3})), constant(Tensor({6})), constant(Tensor({6})), 4),
                  Error);
}

TEST_CASE("group_norm_silu_planes: writes group_norm_silu's values into the conv planes, bit for bit") {
  const int64_t L = simd::kLanes;
  struct Case {
    int64_t N, C, H, W, G;
  };
  for (Case s : {Case{1, 1, 1, 1, 1}, Case{2, 4, 1, L > 1 ? L - 1 : 2, 2}, Case{1, 6, 1, L, 3}, Case{2, 3, 1, L + 1, 1},
                 Case{2, 32, 7, 7, 8}, Case{1, 12, 28, 28, 4}}) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.H);
    CAPTURE(s.W);
    const int64_t HW = s.H * s.W;
    const Shape shape{s.N, s.C, HW};
    Tensor x = randn(shape, 31, 2.0f), gamma = randn({s.C}, 32), beta = randn({s.C}, 33);
    Tensor y(shape), mean({s.N * s.G}), rstd({s.N * s.G}), mean_p({s.N * s.G}), rstd_p({s.N * s.G});
    group_norm_silu_forward(y.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(), s.N, s.C, HW, s.G,
                            1e-5f);
    const ConvPlanes p = conv2d_planes(s.C, s.H, s.W, 3, 1, 1);
    const int64_t image = s.C * p.channel_floats();
    Tensor planes = Tensor::full({s.N * image}, 1e30f), want = Tensor::full({s.N * image}, 1e30f);
    group_norm_silu_planes_forward(planes.data(), mean_p.data(), rstd_p.data(), x.data(), gamma.data(), beta.data(),
                                   s.N, s.C, HW, s.G, 1e-5f, p);
    for (int64_t i = 0; i < s.N * s.C; i++)
      conv2d_write_planes(want.data() + i * p.channel_floats(), y.data() + i * HW, p);
    CHECK(planes.to_vector() == want.to_vector());  // the slack untouched by both
    CHECK(mean_p.to_vector() == mean.to_vector());
    CHECK(rstd_p.to_vector() == rstd.to_vector());
  }
  Tensor x({1, 4, 9});
  CHECK_THROWS_AS(group_norm_silu_planes_forward(x.data(), x.data(), x.data(), x.data(), x.data(), x.data(), 1, 4, 9, 2,
                                                 1e-5f, conv2d_planes(4, 3, 3, 3, 2, 1)),
                  Error);  // stride-2 planes
}

TEST_CASE("group_norm_silu_planes: bit-identical at 1, 2 and 3 threads") {
  const int64_t N = 5, C = 8, H = 5, W = 6, G = 4;
  Tensor x = randn({N, C, H * W}, 34, 3.0f), gamma = randn({C}, 35), beta = randn({C}, 36), stats({2 * N * G});
  const ConvPlanes p = conv2d_planes(C, H, W, 3, 1, 1);
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tensor planes({N * C * p.channel_floats()});
    group_norm_silu_planes_forward(planes.data(), stats.data(), stats.data() + N * G, x.data(), gamma.data(),
                                   beta.data(), N, C, H * W, G, 1e-5f, p);
    if (first.empty()) first = planes.to_vector();
    CHECK(planes.to_vector() == first);
  }
  set_num_threads(1);
}

TEST_CASE("group_norm_silu_planes: a two-part input (an uncopied concat) gives the contiguous input's bits") {
  const int64_t N = 2, C = 12, H = 3, W = 7, HW = H * W, G = 4;  // groups of 3 channels
  Tensor x = randn({N, C, HW}, 37, 2.0f), gamma = randn({C}, 38), beta = randn({C}, 39), stats({2 * N * G});
  const ConvPlanes p = conv2d_planes(C, H, W, 3, 1, 1);
  Tensor want({N * C * p.channel_floats()});
  group_norm_silu_planes_forward(want.data(), stats.data(), stats.data() + N * G, x.data(), gamma.data(), beta.data(),
                                 N, C, HW, G, 1e-5f, p);
  // Split at every channel: groups on the seam (C_head = 4, 5, 7, ...) are gathered first.
  for (int64_t C_head = 0; C_head <= C; C_head++) {
    CAPTURE(C_head);
    Tensor head({N * C_head * HW + 1}), tail({N * (C - C_head) * HW + 1});
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++) {
        const float* src = x.data() + (n * C + c) * HW;
        float* dst = c < C_head ? head.data() + (n * C_head + c) * HW : tail.data() + (n * (C - C_head) + c - C_head) * HW;
        std::copy(src, src + HW, dst);
      }
    Tensor got({N * C * p.channel_floats()});
    group_norm_silu_planes_forward(got.data(), stats.data(), stats.data() + N * G, head.data(), gamma.data(),
                                   beta.data(), N, C, HW, G, 1e-5f, p, tail.data(), C_head);
    CHECK(got.to_vector() == want.to_vector());
  }
}

#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/ops/attention.h"
#include "ddpm/core/parallel.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::gradcheck_twin;
using testing::GradTol;
using testing::randn;

TEST_CASE("attention: kernels match their double twins") {
  struct Case {
    int64_t N, C, P;
  };
  for (Case s : {Case{1, 1, 1}, Case{2, 3, 5}, Case{1, 8, 17}, Case{3, 16, 49}}) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    CAPTURE(s.P);
    const int64_t n = s.N * s.C * s.P;
    Tensor q = randn({n}, 1), k = randn({n}, 2), v = randn({n}, 3), dout = randn({n}, 4);
    Tensor out({n}), A({s.N * s.P * s.P}), out_ref({n}), A_ref({s.N * s.P * s.P});
    attention_forward(out.data(), A.data(), q.data(), k.data(), v.data(), s.N, s.C, s.P);
    attention_forward_ref(out_ref.data(), A_ref.data(), q.data(), k.data(), v.data(), s.N, s.C, s.P);
    // Scores are float sums of C products (~1e-7 * sqrt(C) relative), then exp: A agrees
    // to ~1e-6 relative; out is an average of N(0,1) values, so ~1e-6 absolute.
    testing::check_allclose("A", A, A_ref, 1e-6, 1e-5);
    testing::check_allclose("out", out, out_ref, 1e-5, 1e-5);

    // Backward adds: start from nonzero gradients. Both twins use the same (float) A.
    Tensor dq = Tensor::full({n}, 0.5f), dk = Tensor::full({n}, -0.5f), dv = Tensor::full({n}, 1.0f);
    Tensor dq_ref = dq.clone(), dk_ref = dk.clone(), dv_ref = dv.clone();
    attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), A.data(), q.data(), k.data(), v.data(), s.N,
                       s.C, s.P);
    attention_backward_ref(dq_ref.data(), dk_ref.data(), dv_ref.data(), dout.data(), A.data(), q.data(), k.data(),
                           v.data(), s.N, s.C, s.P);
    // float sums of P (or C) products of O(1) values against double.
    testing::check_allclose("dq", dq, dq_ref, 1e-5, 1e-5);
    testing::check_allclose("dk", dk, dk_ref, 1e-5, 1e-5);
    testing::check_allclose("dv", dv, dv_ref, 1e-5, 1e-5);

    // Null outputs are skipped, and the others are unchanged.
    Tensor dk_only = Tensor::full({n}, -0.5f);
    attention_backward(nullptr, dk_only.data(), nullptr, dout.data(), A.data(), q.data(), k.data(), v.data(), s.N,
                       s.C, s.P);
    CHECK(dk_only.to_vector() == dk.to_vector());
  }
}

TEST_CASE("attention: rows of A sum to 1, and uniform scores give the mean of v") {
  const int64_t N = 2, C = 4, H = 3, W = 5, P = H * W;
  // Every key position equal: S[i, j] = q_i . k_0 / sqrt(C) is the same for every j,
  // so A = 1/P and out[c, i] = mean over j of v[c, j], whatever q is.
  Tensor q = randn({N, C, H, W}, 5), k({N, C, H, W}), v = randn({N, C, H, W}, 6);
  Tensor k_col = randn({N, C}, 7);
  for (int64_t nc = 0; nc < N * C; nc++)
    for (int64_t p = 0; p < P; p++) k[nc * P + p] = k_col[nc];
  Tape tape = Tape::no_grad();
  Var out = attention(tape, constant(q), constant(k), constant(v));
  for (int64_t nc = 0; nc < N * C; nc++) {
    double mean_v = 0.0;
    for (int64_t j = 0; j < P; j++) mean_v += v[nc * P + j];
    mean_v /= P;
    // A = 1/P exactly up to float rounding of exp(0) / P: a few ulps.
    for (int64_t i = 0; i < P; i++) CHECK(std::fabs(out->value[nc * P + i] - mean_v) < 1e-6);
  }
  // Random scores: each row of A is a distribution.
  Tensor A({N * P * P}), o({N * C * P});
  Tensor k2 = randn({N * C * P}, 8, 3.0f);
  attention_forward(o.data(), A.data(), q.data(), k2.data(), v.data(), N, C, P);
  for (int64_t r = 0; r < N * P; r++) {
    double s = 0.0;
    for (int64_t j = 0; j < P; j++) {
      CHECK(A[r * P + j] >= 0.0f);
      s += A[r * P + j];
    }
    CHECK(std::fabs(s - 1.0) < 1e-5);  // P float roundings of values <= 1
  }
}

TEST_CASE("attention: large scores do not overflow (the row max is subtracted)") {
  Tensor q = Tensor::full({1, 1, 1, 2}, 100.0f), k = Tensor::from({1, 1, 1, 2}, {10.0f, 9.0f});
  Tensor v = Tensor::from({1, 1, 1, 2}, {1.0f, 0.0f});
  Tape tape = Tape::no_grad();
  Var out = attention(tape, constant(q), constant(k), constant(v));
  // S = [1000, 900]: A = [1, exp(-100)], out = 1.
  CHECK(out->value[0] == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(std::isfinite(out->value[1]));
}

TEST_CASE("attention: matches values computed by PyTorch") {
  // Produced with /usr/bin/python3 (torch 1.13), N = 1, C = 2, P = 3 (H = 1, W = 3):
  //   q[i] = 2 sin(0.5 i + 0.1), k[i] = 1.5 cos(0.9 i), v[i] = 0.3 i - 1, dout[i] = sin(1.3 i)
  //   (built in double, rounded to float32)
  //   A = softmax(einsum("bci,bcj->bij", q, k) * C**-0.5, dim=-1)
  //   out = einsum("bij,bcj->bci", A, v); out.backward(dout)
  std::vector<float> qs(6), ks(6), vs(6), dos(6);
  for (int i = 0; i < 6; i++) {
    qs[i] = static_cast<float>(std::sin(0.5 * i + 0.1) * 2);
    ks[i] = static_cast<float>(std::cos(0.9 * i) * 1.5);
    vs[i] = static_cast<float>(0.3 * i - 1);
    dos[i] = static_cast<float>(std::sin(1.3 * i));
  }
  const std::vector<float> out_torch = {-0.5665401816368103, -0.7221271991729736, -0.8392409682273865,
                                        0.3334598243236542,  0.17787277698516846, 0.06075906753540039};
  const std::vector<float> dq_torch = {0.08797557651996613,  -0.0113481180742383,   -0.06327398121356964,
                                       -0.05326031520962715, 0.0063092997297644615, 0.029295701533555984};
  const std::vector<float> dk_torch = {-0.08620556443929672, 0.03978703171014786,  0.04641859233379364,
                                       0.0183192677795887,   0.045025069266557693, -0.06334427744150162};
  const std::vector<float> dv_torch = {0.6940511465072632,   0.40128982067108154, 0.3837186098098755,
                                       -0.36239784955978394, -0.290657639503479,  -0.7030453085899353};
  Tape tape;
  Var q = variable(Tensor::from({1, 2, 1, 3}, qs)), k = variable(Tensor::from({1, 2, 1, 3}, ks));
  Var v = variable(Tensor::from({1, 2, 1, 3}, vs));
  Var out = attention(tape, q, k, v);
  tape.backward(out, Tensor::from({1, 2, 1, 3}, dos));
  // float32 in a different order: a few ulps of values ~1.
  testing::check_allclose("out", out->value.data(), out_torch.data(), 6, 1e-6, 1e-5);
  testing::check_allclose("dq", q->grad.data(), dq_torch.data(), 6, 1e-6, 1e-5);
  testing::check_allclose("dk", k->grad.data(), dk_torch.data(), 6, 1e-6, 1e-5);
  testing::check_allclose("dv", v->grad.data(), dv_torch.data(), 6, 1e-6, 1e-5);
}

TEST_CASE("attention: gradients of q, k and v match finite differences") {
  // Against the double twin. The softmax rows are float32 (simd::exp, 2 ulp) and the
  // products sum at most 6 terms, so entries carry ~1e-6 absolute rounding; dq and dk are
  // differences of such sums and can be far smaller than the typical entry (~0.5).
  auto f = [](Tape& t, const std::vector<Var>& v) { return attention(t, v[0], v[1], v[2]); };
  auto twin = [](int64_t N, int64_t C, int64_t P) {
    return [=](std::vector<double>& out, const std::vector<std::vector<double>>& in) {
      std::vector<double> A(N * P * P);
      attention_forward_ref(out.data(), A.data(), in[0].data(), in[1].data(), in[2].data(), N, C, P);
    };
  };
  gradcheck_twin("attention", f, twin(2, 3, 6), {randn({2, 3, 2, 3}, 9), randn({2, 3, 2, 3}, 10), randn({2, 3, 2, 3}, 11)},
                 GradTol{2e-6, 1e-5});
  gradcheck_twin("attention C=1", f, twin(1, 1, 4),
                 {randn({1, 1, 1, 4}, 12), randn({1, 1, 1, 4}, 13), randn({1, 1, 1, 4}, 14)}, GradTol{2e-6, 1e-5});
  // Only v needs a gradient: the q/k branch is skipped and v's gradient is unchanged.
  Tape tape;
  Var q = constant(randn({1, 2, 2, 2}, 15)), k = constant(randn({1, 2, 2, 2}, 16));
  Var v = variable(randn({1, 2, 2, 2}, 17));
  tape.backward(attention(tape, q, k, v), randn({1, 2, 2, 2}, 18));
  CHECK(!q->grad.defined());
  CHECK(v->grad.defined());
}

TEST_CASE("attention: forward and backward are bit-identical at 1, 2 and 3 threads") {
  for (int64_t N : {1, 5}) {  // one image: sgemm uses the threads; five: the images are split
    CAPTURE(N);
    const Shape s = {N, 16, 6, 7};
    Tensor q = randn(s, 19), k = randn(s, 20), v = randn(s, 21), dout = randn(s, 22);
    std::vector<float> out1, dq1, dk1, dv1;
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      Tape tape;
      Var qv = variable(q.clone()), kv = variable(k.clone()), vv = variable(v.clone());
      Var out = attention(tape, qv, kv, vv);
      tape.backward(out, dout);
      if (threads == 1) {
        out1 = out->value.to_vector();
        dq1 = qv->grad.to_vector();
        dk1 = kv->grad.to_vector();
        dv1 = vv->grad.to_vector();
        continue;
      }
      CAPTURE(threads);
      CHECK(out->value.to_vector() == out1);
      CHECK(qv->grad.to_vector() == dq1);
      CHECK(kv->grad.to_vector() == dk1);
      CHECK(vv->grad.to_vector() == dv1);
    }
  }
  set_num_threads(1);
}

TEST_CASE("attention: shape errors") {
  Tape tape;
  Var a = constant(Tensor({2, 4, 3, 3})), b = constant(Tensor({2, 4, 3, 2})), c = constant(Tensor({2, 4, 9}));
  CHECK_THROWS_AS(attention(tape, a, a, b), Error);
  CHECK_THROWS_AS(attention(tape, a, b, a), Error);
  CHECK_THROWS_AS(attention(tape, b, a, a), Error);
  CHECK_THROWS_AS(attention(tape, c, c, c), Error);  // not 4-D
  Var empty_c = constant(Tensor({2, 0, 3, 3}));
  CHECK_THROWS_AS(attention(tape, empty_c, empty_c, empty_c), Error);
  CHECK_NOTHROW(attention(tape, a, a, a));
}

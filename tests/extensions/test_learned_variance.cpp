// Tests for ddpm/extensions/learned_variance.h: the VLB element's derivative against finite differences
// in double (KL and each decoder branch), the hybrid loss's value against diffusion.h's KL and
// decoder, its gradient (gradcheck: the mean gets only L_simple's gradient), and a short
// learned-variance training run.
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/gaussian.h"
#include "ddpm/extensions/learned_variance.h"
#include "ddpm/ops/shape.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::randn;

TEST_CASE("learned_variance: dL/dlog-variance of the KL and the decoder match central differences") {
  struct Case {
    double x0, mq, lq, mp, lp;
    bool decoder;
  };
  const double g = 2.0 / 255.0;  // the 8-bit grid step
  const Case cases[] = {
      {0.1, 0.12, -6.0, 0.05, -5.0, false}, {0.0, -0.3, -3.0, 0.4, -2.0, false}, {0.0, 0.0, -9.0, 0.0, -9.5, false},
      {-1.0 + 100 * g, 0, 0, -1.0 + 100 * g + 0.003, -9.0, true},  // interior bin, mean off-centre
      {-1.0 + 50 * g, 0, 0, -1.0 + 50 * g, -12.0, true},            // interior, narrow
      {-1.0 + 50 * g, 0, 0, 0.3, -4.0, true},                       // interior, far (P ~ 1e-30)
      {-1.0, 0, 0, -0.99, -9.0, true},                              // the -1 edge
      {1.0, 0, 0, 0.995, -8.0, true},                               // the +1 edge
      {1.0, 0, 0, 0.9, -9.0, true},                                 // +1 edge, mean outside the bin
      // Far tails, where P underflows and log P is taken from log Phi of the edges:
      {-1.0 + 100 * g, 0, 0, 0.5, 2 * std::log(0.01), true},        // interior, z ~ -71, bin 0.78 wide in z
      {-1.0 + 230 * g, 0, 0, 0.0, 2 * std::log(0.0214), true},      // interior, z ~ +37.4
      {-1.0, 0, 0, 1.0, 2 * std::log(0.01), true},                  // the -1 edge at z ~ -200
      {1.0, 0, 0, -0.5, 2 * std::log(0.04), true},                  // the +1 edge at z ~ -37
  };
  for (const Case& c : cases) {
    CAPTURE(c.x0);
    CAPTURE(c.lp);
    double d = 0, dummy = 0;
    const double L = vlb_element_forward_backward(c.x0, c.mq, c.lq, c.mp, c.lp, c.decoder, &d);
    CHECK(std::isfinite(L));
    const double h = 1e-5;
    const double fd = (vlb_element_forward_backward(c.x0, c.mq, c.lq, c.mp, c.lp + h, c.decoder, &dummy) -
                       vlb_element_forward_backward(c.x0, c.mq, c.lq, c.mp, c.lp - h, c.decoder, &dummy)) /
                      (2 * h);
    // Double precision, h = 1e-5: truncation ~h^2 L''' ~ 1e-9, rounding ~1e-16 |L| / h ~ 1e-9 for |L| < 100;
    // in the far tails |L| and dL/dlp reach ~1e4 and both errors stay below 1e-6 of dL/dlp.
    CHECK(d == doctest::Approx(fd).epsilon(1e-6).scale(1e-3));
    // The value is diffusion.h's normal_kl / discretized decoder.
    if (c.decoder) CHECK(L == -discretized_gaussian_log_prob(c.x0, c.mp, 0.5 * c.lp));
    else CHECK(L == doctest::Approx(normal_kl(c.mq, c.lq, c.mp, c.lp)).epsilon(1e-14));
  }
}

TEST_CASE("learned_variance: the hybrid loss's VLB term equals the bound's L_{t-1} with the learned Sigma") {
  Schedule s = make_schedule("linear", 100);
  const int64_t N = 3, C = 1, H = 2, W = 2, D = C * H * W;
  Tensor x0({N, C, H, W});
  for (int64_t j = 0; j < x0.numel(); j++) x0[j] = -1.0f + 2.0f * static_cast<float>((j * 37) % 256) / 255.0f;
  Tensor eps = randn({N, C, H, W}, 2);
  const std::vector<int64_t> t{1, 2, 60};
  Tensor x_t = q_sample(s, x0, t, eps);
  Tensor out = randn({N, 2 * C, H, W}, 3, 0.5f);
  Tape tape;
  HybridLoss h = hybrid_loss(tape, s, variable(out), eps, x0, x_t, t);
  // The same term from diffusion.h: p_mean_variance with the learned Sigma of r.
  const LearnedOutput split = split_learned_output(out);
  const Tensor& eps_theta = split.prediction;
  PMeanVariance p = p_mean_variance(s, x_t, t, ModelPrediction{eps_theta, learned_sigma(s, split.r, t)});
  Gaussian q = q_posterior(s, x0, x_t, t);
  for (int64_t i = 0; i < N; i++) {
    double nats = 0, mse = 0;
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      nats += t[i] == 1 ? -discretized_gaussian_log_prob(x0[j], p.mean[j], 0.5 * p.log_variance[j])
                        : normal_kl(q.mean[j], q.log_variance[j], p.mean[j], p.log_variance[j]);
      mse += (double(eps_theta[j]) - eps[j]) * (double(eps_theta[j]) - eps[j]) / D;
    }
    // p_mean_variance rounds mean and log-variance to float; the loss keeps them in double.
    CHECK(h.vb_bpd[i] == doctest::Approx(nats / (D * std::log(2.0))).epsilon(1e-4));
    CHECK(h.per_sample[i] == doctest::Approx(mse + 0.001 * 100 * h.vb_bpd[i]).epsilon(1e-9));
  }
}

TEST_CASE("learned_variance: hybrid_loss gradients match finite differences; the mean gets no VLB gradient") {
  Schedule s = make_schedule("linear", 50);
  const int64_t N = 3, C = 1, H = 2, W = 2, D = 4;
  Tensor x0({N, C, H, W});
  for (int64_t j = 0; j < x0.numel(); j++) x0[j] = -1.0f + 2.0f * static_cast<float>((j * 53 + 7) % 256) / 255.0f;
  Tensor eps = randn({N, C, H, W}, 12);
  const std::vector<int64_t> t{1, 3, 40};
  Tensor x_t = q_sample(s, x0, t, eps);
  HybridLossOptions o;
  o.lambda = 0.3;  // large, so the r gradient is visible next to the MSE's in the check
  o.weights = {1.0, 0.5, 2.0};
  // Finite differences cannot stop a gradient, so each channel group is checked where the
  // stop-gradient is the true derivative: r (the eps channels held constant, so the mean is
  // too) with the VLB term, and the eps channels with lambda = 0 (L_simple alone).
  const Tensor eps_part = randn({N, C, H, W}, 15, 0.5f);
  auto f_r = [&](Tape& tape, const std::vector<Var>& in) {
    return hybrid_loss(tape, s, concat_channels(tape, constant(eps_part), in[0]), eps, x0, x_t, t, o).loss;
  };
  HybridLossOptions simple_only = o;
  simple_only.lambda = 0;
  auto f_eps = [&](Tape& tape, const std::vector<Var>& in) {
    return hybrid_loss(tape, s, concat_channels(tape, in[0], constant(eps_part)), eps, x0, x_t, t, simple_only).loss;
  };
  // Float32 forward of a smooth loss of O(1) values: h balances the truncation error
  // (h^2 / 6 times the third derivative) against the loss's rounding (~6e-8 |L| / h). The
  // discretized decoder's log-CDF differences round more coarsely than |L| suggests, so r
  // takes h = 3e-2: at 1e-2 the scalar build's worst entry was 1.34 x this tolerance, all
  // rounding (it grew to 9 x at h = 1e-3); at 3e-2 it is 0.44 x (scalar) and 0.34 x (AVX-512).
  testing::gradcheck("hybrid_loss d/dr", f_r, {randn({N, C, H, W}, 13, 0.5f)}, 3e-2, testing::GradTol{1e-4, 1e-3});
  testing::gradcheck("hybrid_loss d/deps_theta", f_eps, {randn({N, C, H, W}, 16, 0.5f)}, 1e-2,
                     testing::GradTol{1e-4, 1e-3});
  // Stop-gradient: with lambda = 0 the eps channels' gradient is unchanged and r gets none.
  Tensor out = randn({N, 2 * C, H, W}, 14, 0.5f);
  Var a = variable(out.clone()), b = variable(out.clone());
  {
    Tape tape;
    tape.backward(hybrid_loss(tape, s, a, eps, x0, x_t, t, o).loss);
  }
  HybridLossOptions zero = o;
  zero.lambda = 0;
  {
    Tape tape;
    tape.backward(hybrid_loss(tape, s, b, eps, x0, x_t, t, zero).loss);
  }
  for (int64_t i = 0; i < N; i++)
    for (int64_t j = 0; j < D; j++) {
      CHECK(a->grad[i * 2 * D + j] == b->grad[i * 2 * D + j]);  // eps channels: L_simple only
      CHECK(b->grad[i * 2 * D + D + j] == 0.0f);                // r: only through L_vlb
      CHECK(a->grad[i * 2 * D + D + j] != 0.0f);
    }
}

TEST_CASE("learned_variance: Sigma interpolates log beta_t and log beta-tilde_t by frac = (r + 1) / 2") {
  Schedule s = make_schedule("linear", 100);
  const std::vector<int64_t> t{1, 2, 50, 100};
  for (float r : {-1.0f, 0.0f, 1.0f, 0.5f}) {
    CAPTURE(r);
    const Tensor rr = Tensor::full({4, 1, 1, 2}, r);
    const Sigma sigma = learned_sigma(s, rr, t);
    for (int64_t i = 0; i < 4; i++) {
      // r = 1: log beta_t; r = -1: log beta-tilde_t (clipped at t = 1 to beta-tilde_2)
      const double frac = 0.5 * (r + 1.0);
      const double want = frac * std::log(s.beta[t[i]]) + (1 - frac) * std::log(s.posterior_variance[t[i] > 1 ? t[i] : 2]);
      CHECK(sigma.log_variance[i * 2] == doctest::Approx(want).epsilon(1e-6));
      CHECK(sigma.variance[i * 2 + 1] == doctest::Approx(std::exp(want)).epsilon(1e-6));
    }
  }
  // The model: channels [0, C) are the prediction (converted to eps), [C, 2C) are r.
  const Tensor out = randn({2, 2, 1, 3}, 5);
  EpsFn network = [&out](const Tensor&, const std::vector<int64_t>&) { return out; };
  const Tensor x_t = randn({2, 1, 1, 3}, 6);
  const std::vector<int64_t> t2{3, 70};
  const ModelPrediction m = learned_variance_model(s, network, PredictionTarget::eps)(x_t, t2);
  const LearnedOutput split = split_learned_output(out);
  CHECK(m.eps_theta.to_vector() == split.prediction.to_vector());
  CHECK(m.sigma.log_variance.to_vector() == learned_sigma(s, split.r, t2).log_variance.to_vector());
  CHECK(split.prediction[3] == out[6]);  // sample 1's prediction starts after sample 0's 2C x H x W
  CHECK(split.r[0] == out[3]);
  CHECK_THROWS_AS(split_learned_output(Tensor({2, 3, 1, 1})), Error);
}

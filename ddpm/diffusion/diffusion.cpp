#include "ddpm/diffusion/diffusion.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/gaussian.h"
#include "ddpm/ops/elementwise.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Shapes and timesteps

void check_timesteps(const Schedule& s, const Tensor& x, const std::vector<int64_t>& t, const char* op) {
  DDPM_CHECK(x.defined() && x.dim() >= 1 && x.size(0) >= 1,
             op << ": input " << (x.defined() ? x.shape_str() : std::string("(undefined)"))
                << " needs a batch dimension N >= 1 ([N, C, H, W])");
  DDPM_CHECK(static_cast<int64_t>(t.size()) == x.size(0),
             op << ": " << t.size() << " timesteps for a batch of N = " << x.size(0) << " (" << x.shape_str()
                << "); pass one t per sample");
  for (int64_t ti : t) s.check_t(ti, op);
}

static void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* a_name, const char* b_name) {
  DDPM_CHECK(b.defined() && a.shape() == b.shape(), op << ": " << a_name << " " << a.shape_str() << " and " << b_name
                                                       << " " << (b.defined() ? b.shape_str() : "(undefined)")
                                                       << " must have the same shape");
}

static int64_t elements_per_sample(const Tensor& x) { return x.numel() / x.size(0); }

Tensor per_sample_axpby(const std::vector<float>& a, const Tensor& x, const std::vector<float>& b, const Tensor& y) {
  const int64_t N = x.size(0), D = elements_per_sample(x);
  DDPM_CHECK(static_cast<int64_t>(a.size()) == N && static_cast<int64_t>(b.size()) == N,
             "per_sample_axpby: " << a.size() << " and " << b.size() << " coefficients for N = " << N);
  check_same_shape(x, y, "per_sample_axpby", "x", "y");
  Tensor out(x.shape());
  for (int64_t i = 0; i < N; i++) {
    const float ai = a[i], bi = b[i];
    const float* xi = x.data() + i * D;
    const float* yi = y.data() + i * D;
    float* oi = out.data() + i * D;
    for (int64_t j = 0; j < D; j++) oi[j] = ai * xi[j] + bi * yi[j];
  }
  return out;
}

// table[t_i] for each sample: a schedule array read at the batch's timesteps.
static std::vector<float> at_t(const std::vector<float>& table, const std::vector<int64_t>& t) {
  std::vector<float> out(t.size());
  for (size_t i = 0; i < t.size(); i++) out[i] = table[t[i]];
  return out;
}

// A tensor of x's shape holding value[t[i]] on sample i.
static Tensor per_sample_fill(const Tensor& x, const std::vector<float>& value, const std::vector<int64_t>& t) {
  const int64_t N = x.size(0), D = elements_per_sample(x);
  Tensor out(x.shape());
  for (int64_t i = 0; i < N; i++) std::fill(out.data() + i * D, out.data() + (i + 1) * D, value[t[i]]);
  return out;
}

// ---------------------------------------------------------------------------
// Forward process

Tensor q_step(const Schedule& s, const Tensor& x_prev, const std::vector<int64_t>& t, const Tensor& eps) {
  check_timesteps(s, x_prev, t, "q_step");
  check_same_shape(x_prev, eps, "q_step", "x_prev", "eps");
  std::vector<float> sqrt_alpha(s.T + 1), sqrt_beta(s.T + 1);
  for (int64_t k = 0; k <= s.T; k++) {
    sqrt_alpha[k] = static_cast<float>(std::sqrt(s.alpha[k]));
    sqrt_beta[k] = static_cast<float>(std::sqrt(s.beta[k]));
  }
  // x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps   (slide "Forward (2/2)"; Ho et al. Eq. 2)
  return per_sample_axpby(at_t(sqrt_alpha, t), x_prev, at_t(sqrt_beta, t), eps);
}

Gaussian q_mean_variance(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t) {
  check_timesteps(s, x0, t, "q_mean_variance");
  const int64_t N = x0.size(0), D = elements_per_sample(x0);
  Gaussian g{Tensor(x0.shape()), Tensor(x0.shape()), Tensor(x0.shape())};
  for (int64_t i = 0; i < N; i++) {
    // q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I)   (slide "Forward (2/2)"; Eq. 4)
    const float sqrt_ab = s.f.sqrt_alpha_bar[t[i]];
    const float var = static_cast<float>(1.0 - s.alpha_bar[t[i]]);
    const float log_var = static_cast<float>(std::log(1.0 - s.alpha_bar[t[i]]));
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      g.mean[j] = sqrt_ab * x0[j];
      g.variance[j] = var;
      g.log_variance[j] = log_var;
    }
  }
  return g;
}

Tensor q_sample(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, const Tensor& eps) {
  check_timesteps(s, x0, t, "q_sample");
  check_same_shape(x0, eps, "q_sample", "x0", "eps");
  // x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps   (slide "Forward (2/2)"; Eq. 4; Algorithm 1 line 5)
  return per_sample_axpby(at_t(s.f.sqrt_alpha_bar, t), x0, at_t(s.f.sqrt_one_minus_alpha_bar, t), eps);
}

Tensor keyed_normal(const Shape& shape, RngKey key, int64_t first_index) {
  Tensor z(shape);
  const int64_t D = z.numel() / shape[0];
  fill_normal(z.data(), z.numel(), key, static_cast<uint64_t>(first_index * D));  // index i*D + j
  return z;
}

void forward_chain(const Schedule& s, const Tensor& x0, uint64_t seed, int64_t first_index,
                   const std::function<void(int64_t t, const Tensor& x_t)>& visit) {
  check_timesteps(s, x0, std::vector<int64_t>(x0.defined() && x0.dim() >= 1 ? x0.size(0) : 0, 1), "forward_chain");
  Tensor x = x0;
  visit(0, x);
  for (int64_t t = 1; t <= s.T; t++) {
    Tensor eps = keyed_normal(x0.shape(), RngKey{seed, make_stream(rng_forward_eps, t)}, first_index);
    x = q_step(s, x, std::vector<int64_t>(x0.size(0), t), eps);
    visit(t, x);
  }
}

std::vector<Tensor> forward_chain(const Schedule& s, const Tensor& x0, uint64_t seed, int64_t first_index) {
  std::vector<Tensor> chain;
  forward_chain(s, x0, seed, first_index, [&](int64_t, const Tensor& x_t) { chain.push_back(x_t); });
  return chain;
}

// ---------------------------------------------------------------------------
// Posterior and reverse process

Gaussian q_posterior(const Schedule& s, const Tensor& x0, const Tensor& x_t, const std::vector<int64_t>& t) {
  check_timesteps(s, x_t, t, "q_posterior");
  check_same_shape(x_t, x0, "q_posterior", "x_t", "x0");
  Gaussian g;
  // mu-tilde_t = sqrt(alpha-bar_{t-1}) beta_t / (1 - alpha-bar_t) x_0
  //            + sqrt(alpha_t) (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) x_t   (slide "Reverse (9/15)"; Eq. 7)
  g.mean = per_sample_axpby(at_t(s.f.posterior_mean_coef1, t), x0, at_t(s.f.posterior_mean_coef2, t), x_t);
  // beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t   (slide "Reverse (8/15)"; Eq. 7)
  g.variance = per_sample_fill(x_t, s.f.posterior_variance, t);
  g.log_variance = per_sample_fill(x_t, s.f.posterior_log_variance_clipped, t);
  return g;
}

Tensor predict_x0_from_eps(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const Tensor& eps) {
  check_timesteps(s, x_t, t, "predict_x0_from_eps");
  check_same_shape(x_t, eps, "predict_x0_from_eps", "x_t", "eps");
  std::vector<float> a(s.T + 1), b(s.T + 1);
  for (int64_t k = 0; k <= s.T; k++) {
    a[k] = static_cast<float>(1.0 / s.sqrt_alpha_bar[k]);
    b[k] = static_cast<float>(-s.sqrt_one_minus_alpha_bar[k] / s.sqrt_alpha_bar[k]);
  }
  // x_0 = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t)   (slide "Reverse (10/15)"; Eq. 15)
  return per_sample_axpby(at_t(a, t), x_t, at_t(b, t), eps);
}

Tensor posterior_mean_from_eps(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                               const Tensor& eps) {
  check_timesteps(s, x_t, t, "posterior_mean_from_eps");
  check_same_shape(x_t, eps, "posterior_mean_from_eps", "x_t", "eps");
  std::vector<float> A(s.T + 1), minus_B(s.T + 1);
  for (int64_t k = 0; k <= s.T; k++) {
    A[k] = static_cast<float>(s.sqrt_recip_alpha[k]);                      // A = 1/sqrt(alpha_t)       (slide 11/15)
    minus_B[k] = static_cast<float>(-s.sqrt_recip_alpha[k] * s.eps_coef[k]);  // B = beta_t / (sqrt(alpha_t) sqrt(1 - alpha-bar_t)) (12/15)
  }
  // mu = A x_t - B eps = (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alpha-bar_t) eps)
  //   (slides "Reverse (12/15)" and "(13/15)"; Ho et al. Eq. 11)
  return per_sample_axpby(at_t(A, t), x_t, at_t(minus_B, t), eps);
}

const char* variance_name(VarianceType v) { return v == VarianceType::fixed_large ? "fixed_large" : "fixed_small"; }

VarianceType parse_variance(const std::string& s) {
  if (s == "fixed_large" || s == "large" || s == "beta") return VarianceType::fixed_large;
  if (s == "fixed_small" || s == "small" || s == "beta_tilde") return VarianceType::fixed_small;
  DDPM_FAIL("parse_variance: unknown variance '" << s << "'; use fixed_large (sigma^2 = beta) or fixed_small "
                                                    "(sigma^2 = beta-tilde)");
}

double reverse_variance(const Schedule& s, int64_t t, VarianceType v) {
  s.check_t(t, "reverse_variance");
  // sigma_t^2 = beta_t or beta-tilde_t   (slide "Reverse (1/15)"; Ho et al. Sec. 3.2); t = 1 takes
  // beta-tilde_2 for both, as the original code does (posterior_log_variance_clipped[1] holds its log)
  if (v == VarianceType::fixed_large && t > 1) return s.beta[t];
  return std::exp(s.posterior_log_variance_clipped[t]);
}

double reverse_log_variance(const Schedule& s, int64_t t, VarianceType v) {
  s.check_t(t, "reverse_log_variance");
  if (v == VarianceType::fixed_large && t > 1) return std::log(s.beta[t]);
  return s.posterior_log_variance_clipped[t];
}

Sigma fixed_sigma(const Schedule& s, VarianceType v, const Tensor& x_t, const std::vector<int64_t>& t) {
  check_timesteps(s, x_t, t, "fixed_sigma");
  const int64_t N = x_t.size(0), D = elements_per_sample(x_t);
  Sigma sigma{Tensor(x_t.shape()), Tensor(x_t.shape())};
  for (int64_t i = 0; i < N; i++) {
    // Sigma_theta(x_t, t) = sigma_t^2 I   (slide "Reverse (1/15)"). The variance of fixed small is
    // beta-tilde_t itself (0 at t = 1, where Algorithm 2 adds no noise); its log is clipped there.
    const float var = v == VarianceType::fixed_small ? s.f.posterior_variance[t[i]]
                                                     : static_cast<float>(reverse_variance(s, t[i], v));
    const float log_var = static_cast<float>(reverse_log_variance(s, t[i], v));
    std::fill(sigma.variance.data() + i * D, sigma.variance.data() + (i + 1) * D, var);
    std::fill(sigma.log_variance.data() + i * D, sigma.log_variance.data() + (i + 1) * D, log_var);
  }
  return sigma;
}

ModelFn fixed_variance_model(const Schedule& s, EpsFn eps_theta, VarianceType v) {
  return [&s, eps_theta, v](const Tensor& x_t, const std::vector<int64_t>& t) {
    return ModelPrediction{eps_theta(x_t, t), fixed_sigma(s, v, x_t, t)};
  };
}

PMeanVariance p_mean_variance(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                              const ModelPrediction& model, bool clip_x0) {
  check_timesteps(s, x_t, t, "p_mean_variance");
  check_same_shape(x_t, model.eps_theta, "p_mean_variance", "x_t", "eps_theta");
  check_same_shape(x_t, model.sigma.variance, "p_mean_variance", "x_t", "Sigma_theta");
  check_same_shape(x_t, model.sigma.log_variance, "p_mean_variance", "x_t", "log Sigma_theta");
  PMeanVariance p;
  // x_0 implied by eps_theta   (slide "Reverse (10/15)"; Eq. 15)
  p.pred_x0 = predict_x0_from_eps(s, x_t, t, model.eps_theta);
  if (clip_x0) {
    // Departure from Algorithm 2 (see diffusion.h): mean = mu-tilde(x_t, clip(pred_x0, -1, 1)).
    for (int64_t j = 0; j < p.pred_x0.numel(); j++) p.pred_x0[j] = std::min(1.0f, std::max(-1.0f, p.pred_x0[j]));
    p.mean = q_posterior(s, p.pred_x0, x_t, t).mean;
  } else {
    // mu_theta = (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alpha-bar_t) eps_theta)   (slide 13/15; Eq. 11)
    p.mean = posterior_mean_from_eps(s, x_t, t, model.eps_theta);
  }
  // p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), Sigma_theta(x_t, t))   (slide "Reverse (1/15)"; Eq. 1)
  p.variance = model.sigma.variance;
  p.log_variance = model.sigma.log_variance;
  return p;
}

Tensor p_sample(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const ModelPrediction& model,
                const Tensor& z, bool clip_x0) {
  check_same_shape(x_t, z, "p_sample", "x_t", "z");
  PMeanVariance p = p_mean_variance(s, x_t, t, model, clip_x0);
  const int64_t N = x_t.size(0), D = elements_per_sample(x_t);
  Tensor x_prev(x_t.shape());
  for (int64_t i = 0; i < N; i++) {
    const bool noise = t[i] > 1;  // Algorithm 2 line 3: z = 0 at t = 1
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      // x_{t-1} = mu_theta(x_t, t) + sigma_t z   (Algorithm 2 line 4; slide "Reverse (15/15)")
      x_prev[j] = noise ? p.mean[j] + std::sqrt(p.variance[j]) * z[j] : p.mean[j];
    }
  }
  return x_prev;
}

// ---------------------------------------------------------------------------
// Losses

double loss_weight(const Schedule& s, int64_t t, VarianceType v) {
  const double sigma2 = reverse_variance(s, t, v);
  // beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha-bar_t))   (Ho et al. Eq. 12; slide "Reverse (14/15)"
  // prints beta_t where the square belongs: (B / sqrt(...))^2 = beta_t^2 / (alpha_t (1 - alpha-bar_t)))
  return s.beta[t] * s.beta[t] / (2.0 * sigma2 * s.alpha[t] * (1.0 - s.alpha_bar[t]));
}

Var loss_simple(Tape& tape, const Var& eps_theta, const Tensor& eps) {
  check_same_shape(eps_theta->value, eps, "loss_simple", "eps_theta", "eps");
  // L_simple = || eps - eps_theta(x_t, t) ||^2, averaged over the batch and the elements
  // (PyTorch's F.mse_loss, as every implementation does)   (Algorithm 1 line 5; Eq. 14; slide 14/15)
  return mse_loss(tape, eps_theta, constant(eps));
}

Var weighted_sse(Tape& tape, const Var& eps_theta, const Tensor& eps, const std::vector<double>& w) {
  const Tensor& et = eps_theta->value;
  check_same_shape(et, eps, "weighted_sse", "eps_theta", "eps");
  DDPM_CHECK(et.dim() >= 1 && static_cast<int64_t>(w.size()) == et.size(0),
             "weighted_sse: " << w.size() << " weights for eps_theta " << et.shape_str() << "; pass one per sample");
  const int64_t N = et.size(0), D = elements_per_sample(et);
  double acc = 0.0;
  for (int64_t i = 0; i < N; i++) {
    double sse = 0.0;
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      const double d = static_cast<double>(eps[j]) - et[j];
      sse += d * d;
    }
    acc += w[i] * sse;  // out = (1/N) sum_i w_i sum_j (eps_ij - eps_theta_ij)^2
  }
  Tensor out({1});
  out[0] = static_cast<float>(acc / N);
  return tape.record("weighted_sse", out, {eps_theta}, [eps_theta, eps, w, N, D](Node& o) {
    // out = (1/N) sum_i w_i sum_j (eps_ij - eps_theta_ij)^2  =>  d eps_theta_ij += dout (2/N) w_i (eps_theta_ij - eps_ij)
    float* d = eps_theta->grad_ref().data();
    const float* et = eps_theta->value.data();
    for (int64_t i = 0; i < N; i++) {
      const float g = static_cast<float>(2.0 * w[i] / N) * o.grad[0];
      for (int64_t j = i * D; j < (i + 1) * D; j++) d[j] += g * (et[j] - eps[j]);
    }
  });
}

Var loss_weighted(Tape& tape, const Schedule& s, const Var& eps_theta, const Tensor& eps,
                  const std::vector<int64_t>& t, VarianceType variance) {
  check_timesteps(s, eps_theta->value, t, "loss_weighted");
  std::vector<double> w(t.size());
  for (size_t i = 0; i < t.size(); i++) w[i] = loss_weight(s, t[i], variance);
  // L_{t-1} - C = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha-bar_t)) ||eps - eps_theta||^2   (Eq. 12; slide 14/15)
  return weighted_sse(tape, eps_theta, eps, w);
}

// ---------------------------------------------------------------------------
// The variational bound

// Per-image sums of an elementwise tensor, in double.
static std::vector<double> sum_per_sample(const Tensor& x) {
  const int64_t N = x.size(0), D = elements_per_sample(x);
  std::vector<double> out(N, 0.0);
  for (int64_t i = 0; i < N; i++)
    for (int64_t j = i * D; j < (i + 1) * D; j++) out[i] += x[j];
  return out;
}

static void check_vlb_inputs(const Schedule& s, const Tensor& x0, const VlbOptions& options) {
  const std::vector<int64_t> t_one(x0.defined() && x0.dim() >= 1 ? x0.size(0) : 0, 1);
  check_timesteps(s, x0, t_one, "vlb_terms");
  DDPM_CHECK(options.stride >= 1, "vlb_terms: stride = " << options.stride << " must be at least 1");
  for (int64_t j = 0; j < x0.numel(); j++)
    DDPM_CHECK(x0[j] >= -1.0f && x0[j] <= 1.0f,
               "vlb_terms: x0[" << j << "] = " << x0[j] << " is outside [-1, 1]; the decoder L_0 needs 8-bit data scaled to [-1, 1]");
}

// x_t ~ q(x_t | x_0), keyed by (seed, t, first_index + i): the same draw for an image
// whatever batch it is in.
static Tensor vlb_q_draw(const Schedule& s, const Tensor& x0, int64_t t, uint64_t seed, int64_t first_index) {
  Tensor eps = keyed_normal(x0.shape(), RngKey{seed, make_stream(rng_vlb_eps, t)}, first_index);
  return q_sample(s, x0, std::vector<int64_t>(x0.size(0), t), eps);
}

// Which L_{t-1} to evaluate, and how many of the T - 1 terms each stands for, T first.
// Stride 1: every t = 2..T. Stride k > 1 estimates the sum: the first k terms (t = 2..k+1,
// where L_{t-1} changes fastest) are all evaluated; after them each block of k consecutive t
// is represented by its midpoint term, counted for the whole block (the last block may be shorter).
static void vlb_kl_plan(int64_t T, int64_t stride, std::vector<int64_t>& kl_t, std::vector<int64_t>& kl_count) {
  for (int64_t b = 2; b <= T; b += stride) {
    const int64_t n = std::min(stride, T + 1 - b);  // block [b, b + n - 1]
    if (b == 2) {
      for (int64_t t = 2; t < 2 + n; t++) {
        kl_t.push_back(t);
        kl_count.push_back(1);
      }
    } else {
      kl_t.push_back(b + n / 2);
      kl_count.push_back(n);
    }
  }
  std::reverse(kl_t.begin(), kl_t.end());  // the reverse process's order: T first
  std::reverse(kl_count.begin(), kl_count.end());
}

static std::string vlb_name(int64_t stride, size_t evaluated, int64_t T) {
  if (stride == 1) return "L_vlb (all T terms)";
  return "L_vlb estimate (stride " + std::to_string(stride) + ": " + std::to_string(evaluated) + " of the " +
         std::to_string(T - 1) + " KL terms: the first " + std::to_string(stride) + ", then one per block of " +
         std::to_string(stride) + " counted for the block)";
}

// L_T = KL(q(x_T | x_0) || p(x_T)), p(x_T) = N(0, I)   (slide "Reverse (7/15)"; Eq. 5)
static std::vector<double> prior_term(const Schedule& s, const Tensor& x0) {
  Gaussian qT = q_mean_variance(s, x0, std::vector<int64_t>(x0.size(0), s.T));
  Tensor zeros(x0.shape());
  return sum_per_sample(normal_kl(qT.mean, qT.log_variance, zeros, zeros));
}

// L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))   (slide "Reverse (7/15)"; Eq. 5)
static std::vector<double> kl_term(const Schedule& s, const ModelFn& model, const Tensor& x0, const Tensor& x_t,
                                   int64_t t, bool clip_x0) {
  const std::vector<int64_t> tv(x0.size(0), t);
  Gaussian q = q_posterior(s, x0, x_t, tv);
  PMeanVariance p = p_mean_variance(s, x_t, tv, model(x_t, tv), clip_x0);
  return sum_per_sample(normal_kl(q.mean, q.log_variance, p.mean, p.log_variance));
}

// L_0 = -log p_theta(x_0 | x_1), the discretized Gaussian decoder   (slide "Reverse (15/15)"; Eq. 13)
static std::vector<double> decoder_term(const Schedule& s, const ModelFn& model, const Tensor& x0, const Tensor& x_1,
                                        bool clip_x0) {
  const std::vector<int64_t> t1(x0.size(0), 1);
  PMeanVariance p = p_mean_variance(s, x_1, t1, model(x_1, t1), clip_x0);
  Tensor log_scales(x0.shape());
  for (int64_t j = 0; j < x0.numel(); j++) log_scales[j] = 0.5f * p.log_variance[j];
  std::vector<double> nats = sum_per_sample(discretized_gaussian_log_likelihood(x0, p.mean, log_scales));
  for (double& v : nats) v = -v;
  return nats;
}

VlbResult vlb_terms(const Schedule& s, const ModelFn& model, const Tensor& x0, uint64_t seed,
                    const VlbOptions& options) {
  check_vlb_inputs(s, x0, options);
  const int64_t N = x0.size(0), D = elements_per_sample(x0);
  VlbResult r;
  r.T = s.T;
  r.stride = options.stride;
  r.D = D;

  // L_T: the prior term.
  r.prior_nats = prior_term(s, x0);

  // sum_{t=2..T} L_{t-1}, each term at its own draw x_t ~ q(x_t | x_0).
  vlb_kl_plan(s.T, options.stride, r.kl_t, r.kl_count);
  r.kl_sum_nats.assign(N, 0.0);
  for (size_t k = 0; k < r.kl_t.size(); k++) {
    const int64_t t = r.kl_t[k];
    Tensor x_t = vlb_q_draw(s, x0, t, seed, options.first_index);
    r.kl_nats.push_back(kl_term(s, model, x0, x_t, t, options.clip_x0));
    for (int64_t i = 0; i < N; i++) r.kl_sum_nats[i] += static_cast<double>(r.kl_count[k]) * r.kl_nats.back()[i];
  }
  r.name = vlb_name(options.stride, r.kl_t.size(), s.T);

  // L_0: the decoder term, at x_1 ~ q(x_1 | x_0).
  r.decoder_nats = decoder_term(s, model, x0, vlb_q_draw(s, x0, 1, seed, options.first_index), options.clip_x0);

  // -log p_theta(x_0) <= L_T + sum_{t>=2} L_{t-1} + L_0   (slide "Reverse (7/15)"; Eq. 5)
  r.total_nats.resize(N);
  r.total_bpd.resize(N);
  for (int64_t i = 0; i < N; i++) {
    r.total_nats[i] = r.prior_nats[i] + r.kl_sum_nats[i] + r.decoder_nats[i];
    r.total_bpd[i] = r.total_nats[i] / (static_cast<double>(D) * std::log(2.0));  // bits/dim
    r.mean_nats += r.total_nats[i] / N;
    r.mean_bpd += r.total_bpd[i] / N;
  }
  return r;
}

}  // namespace ddpm

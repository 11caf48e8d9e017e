#include "ddpm/diffusion.h"

#include <algorithm>
#include <cmath>

#include "ddpm/check.h"
#include "ddpm/learned_variance.h"
#include "ddpm/ops/elementwise.h"
#include "ddpm/targets.h"
#include "ddpm/timestep_sampler.h"

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

// out[i, j] = a_t[i] * x[i, j] + b_t[i] * y[i, j]: the shape of most formulas below.
static Tensor per_sample_axpby(const std::vector<float>& a, const Tensor& x, const std::vector<float>& b,
                               const Tensor& y, const std::vector<int64_t>& t) {
  const int64_t N = x.size(0), D = elements_per_sample(x);
  Tensor out(x.shape());
  for (int64_t i = 0; i < N; i++) {
    const float ai = a[t[i]], bi = b[t[i]];
    const float* xi = x.data() + i * D;
    const float* yi = y.data() + i * D;
    float* oi = out.data() + i * D;
    for (int64_t j = 0; j < D; j++) oi[j] = ai * xi[j] + bi * yi[j];
  }
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
  return per_sample_axpby(sqrt_alpha, x_prev, sqrt_beta, eps, t);
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
  return per_sample_axpby(s.f.sqrt_alpha_bar, x0, s.f.sqrt_one_minus_alpha_bar, eps, t);
}

static Tensor keyed_normal(const Shape& shape, RngKey key, int64_t first_index) {
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
  g.mean = per_sample_axpby(s.f.posterior_mean_coef1, x0, s.f.posterior_mean_coef2, x_t, t);
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
  return per_sample_axpby(a, x_t, b, eps, t);
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
  return per_sample_axpby(A, x_t, minus_B, eps, t);
}

const char* variance_name(VarianceType v) {
  switch (v) {
    case VarianceType::fixed_large: return "fixed_large";
    case VarianceType::fixed_small: return "fixed_small";
    case VarianceType::learned_range: return "learned_range";
  }
  return "?";
}

VarianceType parse_variance(const std::string& s) {
  if (s == "fixed_large" || s == "large" || s == "beta") return VarianceType::fixed_large;
  if (s == "fixed_small" || s == "small" || s == "beta_tilde") return VarianceType::fixed_small;
  if (s == "learned_range") return VarianceType::learned_range;
  DDPM_FAIL("parse_variance: unknown variance '" << s << "'; use fixed_large (sigma^2 = beta), fixed_small "
                                                    "(sigma^2 = beta-tilde) or learned_range");
}

PMeanVariance p_mean_variance(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t,
                              const ModelOutput& model, const ReverseOptions& options) {
  check_timesteps(s, x_t, t, "p_mean_variance");
  check_same_shape(x_t, model.eps, "p_mean_variance", "x_t", "eps_theta");
  PMeanVariance p;
  // x_0 implied by eps_theta   (slide "Reverse (10/15)"; Eq. 15)
  p.pred_x0 = predict_x0_from_eps(s, x_t, t, model.eps);
  if (options.clip_x0) {
    // Departure from Algorithm 2 (see diffusion.h): mean = mu-tilde(x_t, clip(pred_x0, -1, 1)).
    for (int64_t j = 0; j < p.pred_x0.numel(); j++) p.pred_x0[j] = std::min(1.0f, std::max(-1.0f, p.pred_x0[j]));
    p.mean = q_posterior(s, p.pred_x0, x_t, t).mean;
  } else {
    // mu_theta = (1/sqrt(alpha_t)) (x_t - beta_t / sqrt(1 - alpha-bar_t) eps_theta)   (slide 13/15; Eq. 11)
    p.mean = posterior_mean_from_eps(s, x_t, t, model.eps);
  }
  switch (options.variance) {
    case VarianceType::fixed_large: {
      // Sigma_theta = sigma_t^2 I, sigma_t^2 = beta_t   (slide "Reverse (1/15)")
      std::vector<float> log_beta(s.T + 1, 0.0f);
      for (int64_t k = 1; k <= s.T; k++) log_beta[k] = static_cast<float>(std::log(s.beta[k]));
      p.variance = per_sample_fill(x_t, s.f.beta, t);
      p.log_variance = per_sample_fill(x_t, log_beta, t);
      break;
    }
    case VarianceType::fixed_small:
      // sigma_t^2 = beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t   (slide "Reverse (1/15)")
      p.variance = per_sample_fill(x_t, s.f.posterior_variance, t);
      p.log_variance = per_sample_fill(x_t, s.f.posterior_log_variance_clipped, t);
      break;
    case VarianceType::learned_range: {
      DDPM_CHECK(model.v.defined(), "p_mean_variance: learned_range variance needs the model's v output (ModelOutput.v)");
      check_same_shape(x_t, model.v, "p_mean_variance", "x_t", "v");
      // log Sigma = v log beta_t + (1 - v) log beta-tilde_t   (Nichol & Dhariwal 2021, Sec. 3.1)
      const int64_t N = x_t.size(0), D = elements_per_sample(x_t);
      p.variance = Tensor(x_t.shape());
      p.log_variance = Tensor(x_t.shape());
      for (int64_t i = 0; i < N; i++) {
        const double max_log = std::log(s.beta[t[i]]), min_log = s.posterior_log_variance_clipped[t[i]];
        for (int64_t j = i * D; j < (i + 1) * D; j++) {
          const double lv = model.v[j] * max_log + (1.0 - model.v[j]) * min_log;
          p.log_variance[j] = static_cast<float>(lv);
          p.variance[j] = static_cast<float>(std::exp(lv));
        }
      }
      break;
    }
  }
  return p;
}

Tensor p_sample(const Schedule& s, const Tensor& x_t, const std::vector<int64_t>& t, const ModelOutput& model,
                const Tensor& z, const ReverseOptions& options) {
  check_same_shape(x_t, z, "p_sample", "x_t", "z");
  PMeanVariance p = p_mean_variance(s, x_t, t, model, options);
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

double reverse_variance(const Schedule& s, int64_t t, VarianceType v) {
  s.check_t(t, "reverse_variance");
  switch (v) {
    case VarianceType::fixed_large: return s.beta[t];                                     // sigma_t^2 = beta_t
    case VarianceType::fixed_small: return std::exp(s.posterior_log_variance_clipped[t]);  // beta-tilde_t (t = 1: beta-tilde_2)
    case VarianceType::learned_range: break;
  }
  DDPM_FAIL("reverse_variance: learned_range has no fixed sigma_t^2; it comes from the model");
}

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

double normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
  // KL(N(m1, v1) || N(m2, v2)) = 1/2 (-1 + log v2 - log v1 + v1 / v2 + (m1 - m2)^2 / v2)
  const double d = mean1 - mean2;
  return 0.5 * (-1.0 + logvar2 - logvar1 + std::exp(logvar1 - logvar2) + d * d * std::exp(-logvar2));
}

Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2) {
  check_same_shape(mean1, logvar1, "normal_kl", "mean1", "logvar1");
  check_same_shape(mean1, mean2, "normal_kl", "mean1", "mean2");
  check_same_shape(mean1, logvar2, "normal_kl", "mean1", "logvar2");
  Tensor out(mean1.shape());
  for (int64_t j = 0; j < out.numel(); j++)
    out[j] = static_cast<float>(normal_kl(mean1[j], logvar1[j], mean2[j], logvar2[j]));
  return out;
}

static const double kHalfLog2Pi = 0.5 * std::log(2.0 * M_PI);

// log Phi(z), the standard normal CDF, to ~1e-15 relative for every z.
double log_normal_cdf(double z) {
  // Upper side: log Phi(z) = log(1 - Q(z)), Q(z) = Phi(-z) = erfc(z / sqrt 2) / 2; log1p keeps -Q(z)
  // when 1 - Q(z) rounds to 1 (from z ~ 8.3 on).
  if (z > 0.0) return std::log1p(-0.5 * std::erfc(z / std::sqrt(2.0)));
  if (z > -30.0) return std::log(0.5 * std::erfc(-z / std::sqrt(2.0)));
  // Far lower tail, where erfc underflows (from z ~ -37.5): the asymptotic series of the Mills
  // ratio (Abramowitz & Stegun 26.2.12), with r = 1 / z^2,
  //   Phi(z) = phi(z) / (-z) (1 - r + 3 r^2 - 15 r^3 + 105 r^4 - 945 r^5 + ...);
  // at z <= -30 the first term left out, 10395 r^6, is below 2e-14.
  const double r = 1.0 / (z * z);
  const double series = -r * (1.0 - 3.0 * r * (1.0 - 5.0 * r * (1.0 - 7.0 * r * (1.0 - 9.0 * r))));  // the sum minus 1
  return -0.5 * z * z - std::log(-z) - kHalfLog2Pi + std::log1p(series);
}

// log(exp(a) - exp(b)) for a > b, without forming exp(a) (which may underflow).
static double log_diff_exp(double a, double b) { return a + std::log(-std::expm1(b - a)); }

double discretized_gaussian_log_prob(double x, double mean, double log_scale) {
  const double inv_scale = std::exp(-log_scale);
  const double half_bin = 1.0 / 255.0;  // 256 levels on [-1, 1]: bins of width 2/255
  const double z_plus = (x - mean + half_bin) * inv_scale, z_minus = (x - mean - half_bin) * inv_scale;
  // p_theta(x_0 | x_1) = prod_i int_{delta_-(x_0^i)}^{delta_+(x_0^i)} N(x; mu_theta^i(x_1, 1), sigma_1^2) dx,
  // delta_+ = inf if x = 1 else x + 1/255, delta_- = -inf if x = -1 else x - 1/255   (Ho et al. Eq. 13)
  if (x < -0.999) return log_normal_cdf(z_plus);    // the bin of -1 reaches -inf
  if (x > 0.999) return log_normal_cdf(-z_minus);   // the bin of +1 reaches +inf: 1 - Phi(z) = Phi(-z)
  // Phi(z+) - Phi(z-), taken in the tail where it does not cancel.
  const double p = z_minus > 0 ? 0.5 * std::erfc(z_minus / std::sqrt(2.0)) - 0.5 * std::erfc(z_plus / std::sqrt(2.0))
                               : 0.5 * std::erfc(-z_plus / std::sqrt(2.0)) - 0.5 * std::erfc(-z_minus / std::sqrt(2.0));
  if (p > 1e-300) return std::log(p);
  // Far tail, where the difference underflows: in logs, on the tail's side,
  // Phi(z+) - Phi(z-) = Phi(-z-) - Phi(-z+) above the mean.
  return z_minus > 0 ? log_diff_exp(log_normal_cdf(-z_minus), log_normal_cdf(-z_plus))
                     : log_diff_exp(log_normal_cdf(z_plus), log_normal_cdf(z_minus));
}

Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales) {
  check_same_shape(x, means, "discretized_gaussian_log_likelihood", "x", "means");
  check_same_shape(x, log_scales, "discretized_gaussian_log_likelihood", "x", "log_scales");
  Tensor out(x.shape());
  for (int64_t j = 0; j < x.numel(); j++)
    out[j] = static_cast<float>(discretized_gaussian_log_prob(x[j], means[j], log_scales[j]));
  return out;
}

// Per-image sums of an elementwise tensor, in double.
static std::vector<double> sum_per_sample(const Tensor& x) {
  const int64_t N = x.size(0), D = elements_per_sample(x);
  std::vector<double> out(N, 0.0);
  for (int64_t i = 0; i < N; i++)
    for (int64_t j = i * D; j < (i + 1) * D; j++) out[i] += x[j];
  return out;
}

VlbResult vlb_terms(const Schedule& s, const EpsFn& model, const Tensor& x0, uint64_t seed,
                    const VlbOptions& options) {
  const std::vector<int64_t> t_one(x0.defined() && x0.dim() >= 1 ? x0.size(0) : 0, 1);
  check_timesteps(s, x0, t_one, "vlb_terms");
  DDPM_CHECK(options.stride >= 1, "vlb_terms: stride = " << options.stride << " must be at least 1");
  for (int64_t j = 0; j < x0.numel(); j++)
    DDPM_CHECK(x0[j] >= -1.0f && x0[j] <= 1.0f,
               "vlb_terms: x0[" << j << "] = " << x0[j] << " is outside [-1, 1]; the decoder L_0 needs 8-bit data scaled to [-1, 1]");
  const int64_t N = x0.size(0), D = elements_per_sample(x0);
  VlbResult r;
  r.T = s.T;
  r.stride = options.stride;
  r.D = D;
  auto tvec = [&](int64_t t) { return std::vector<int64_t>(N, t); };
  auto q_draw = [&](int64_t t) {  // x_t ~ q(x_t | x_0), keyed by (seed, t, first_index + i)
    Tensor eps = keyed_normal(x0.shape(), RngKey{seed, make_stream(rng_vlb_eps, t)}, options.first_index);
    return q_sample(s, x0, tvec(t), eps);
  };

  // L_T = KL(q(x_T | x_0) || p(x_T)), p(x_T) = N(0, I)   (slide "Reverse (7/15)"; Eq. 5)
  Gaussian qT = q_mean_variance(s, x0, tvec(s.T));
  Tensor zeros(x0.shape());
  r.prior_nats = sum_per_sample(normal_kl(qT.mean, qT.log_variance, zeros, zeros));

  // L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)), t = 2..T   (slide 7/15; Eq. 5)
  // Stride 1: every t = 2..T. Stride k > 1 estimates the sum: the first k terms (t = 2..k+1,
  // where L_{t-1} changes fastest) are all evaluated; after them each block of k consecutive t
  // is represented by its midpoint term, counted for the whole block (the last block may be shorter).
  for (int64_t b = 2; b <= s.T; b += options.stride) {
    const int64_t n = std::min(options.stride, s.T + 1 - b);  // block [b, b + n - 1]
    if (b == 2) {
      for (int64_t t = 2; t < 2 + n; t++) {
        r.kl_t.push_back(t);
        r.kl_count.push_back(1);
      }
    } else {
      r.kl_t.push_back(b + n / 2);
      r.kl_count.push_back(n);
    }
  }
  std::reverse(r.kl_t.begin(), r.kl_t.end());  // the reverse process's order: T first
  std::reverse(r.kl_count.begin(), r.kl_count.end());
  r.kl_sum_nats.assign(N, 0.0);
  for (size_t k = 0; k < r.kl_t.size(); k++) {
    const int64_t t = r.kl_t[k];
    Tensor x_t = q_draw(t);
    Gaussian q = q_posterior(s, x0, x_t, tvec(t));
    PMeanVariance p = p_mean_variance(s, x_t, tvec(t), model(x_t, tvec(t)), options.reverse);
    r.kl_nats.push_back(sum_per_sample(normal_kl(q.mean, q.log_variance, p.mean, p.log_variance)));
    for (int64_t i = 0; i < N; i++) r.kl_sum_nats[i] += static_cast<double>(r.kl_count[k]) * r.kl_nats.back()[i];
  }
  if (options.stride == 1) {
    r.name = "L_vlb (all T terms)";
  } else {
    r.name = "L_vlb estimate (stride " + std::to_string(options.stride) + ": " + std::to_string(r.kl_t.size()) +
             " of the " + std::to_string(s.T - 1) + " KL terms: the first " + std::to_string(options.stride) +
             ", then one per block of " + std::to_string(options.stride) + " counted for the block)";
  }

  // L_0 = -log p_theta(x_0 | x_1), the discretized Gaussian decoder   (slide "Reverse (15/15)"; Eq. 13)
  {
    Tensor x_1 = q_draw(1);
    PMeanVariance p = p_mean_variance(s, x_1, tvec(1), model(x_1, tvec(1)), options.reverse);
    Tensor log_scales(x0.shape());
    for (int64_t j = 0; j < x0.numel(); j++) log_scales[j] = 0.5f * p.log_variance[j];
    r.decoder_nats = sum_per_sample(discretized_gaussian_log_likelihood(x0, p.mean, log_scales));
    for (double& v : r.decoder_nats) v = -v;
  }

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

// ---------------------------------------------------------------------------
// Algorithms 1 and 2

// The loss when an option of TrainOptions is on (README "Beyond Algorithm 2"):
//   predict x0 or v     MSE against that target instead of eps (targets.h)
//   learned_variance    L_hybrid = L_simple + lambda L_vlb (learned_variance.h)
//   timesteps           each sample's loss times w_i = 1 / (T p_{t_i}) (timestep_sampler.h)
static void beyond_algorithm1_loss(Tape& tape, const Schedule& s, const Tensor& x0, const TrainOptions& options,
                                   TrainStep& r) {
  const int64_t N = x0.size(0), D = elements_per_sample(x0);
  const Tensor target = training_target(options.predict, s, x0, r.eps, r.t);
  if (options.learned_variance) {
    DDPM_CHECK(options.loss == LossType::simple,
               "training_step: the learned variance trains on L_hybrid = L_simple + lambda L_vlb; use loss simple");
    HybridLossOptions h;
    h.lambda = options.vlb_lambda;
    h.predict = options.predict;
    h.weights = r.weights;
    HybridLoss hl = hybrid_loss(tape, s, r.eps_theta, target, x0, r.x_t, r.t, h);
    r.loss = hl.loss;
    r.per_sample_loss = hl.per_sample;
    r.vb_bpd = hl.vb_bpd;
    return;
  }
  check_same_shape(r.x_t, r.eps_theta->value, "training_step", "x_t", "the model's output");
  DDPM_CHECK(options.loss == LossType::simple || options.predict == PredictionTarget::eps,
             "training_step: the weighted loss L_t is an eps-MSE; with --predict " << target_name(options.predict)
                                                                                  << " use loss simple");
  // Per-sample weights of the SSE: 1/D (simple: a per-sample mean) or L_t's scaling term.
  std::vector<double> per_sse(N);
  for (int64_t i = 0; i < N; i++)
    per_sse[i] = options.loss == LossType::simple ? 1.0 / D : loss_weight(s, r.t[i], options.variance);
  r.per_sample_loss.assign(N, 0.0);
  for (int64_t i = 0; i < N; i++) {
    double sse = 0.0;
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      const double d = static_cast<double>(target[j]) - r.eps_theta->value[j];
      sse += d * d;
    }
    r.per_sample_loss[i] = per_sse[i] * sse;
  }
  if (r.weights.empty()) {
    // || target - out ||^2 averaged over batch and elements   (Algorithm 1 line 5 with the target swapped)
    r.loss = loss_simple(tape, r.eps_theta, target);
    return;
  }
  // (1/N) sum_i w_i loss_i: importance-weighted, unbiased for the uniform-t average
  std::vector<double> w(N);
  for (int64_t i = 0; i < N; i++) w[i] = r.weights[i] * per_sse[i];
  r.loss = weighted_sse(tape, r.eps_theta, target, w);
}

TrainStep training_step(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0, uint64_t seed,
                        uint64_t step, const TrainOptions& options) {
  check_timesteps(s, x0, std::vector<int64_t>(x0.defined() && x0.dim() >= 1 ? x0.size(0) : 0, 1), "training_step");
  const int64_t N = x0.size(0);
  const RngKey t_key{seed, make_stream(rng_train_t, step)}, eps_key{seed, make_stream(rng_train_eps, step)};
  // Algorithm 1 line 2: x_0 ~ q(x_0)                         -- the caller's batch x0
  // Algorithm 1 line 3: t ~ Uniform({1, ..., T})
  std::vector<int64_t> t(N);
  std::vector<double> weights;
  if (options.timesteps) {
    // Beyond Algorithm 1 (option): importance-sampled t, weights 1 / (T p_t) (timestep_sampler.h)
    options.timesteps->sample(t_key, options.first_index, N, t, weights);
  } else {
    for (int64_t i = 0; i < N; i++)
      t[i] = 1 + std::min<int64_t>(s.T - 1, static_cast<int64_t>(uniform_double(t_key, options.first_index + i) * s.T));
  }
  // Algorithm 1 line 4: eps ~ N(0, I)
  Tensor eps = keyed_normal(x0.shape(), eps_key, options.first_index);
  // Algorithm 1 line 5
  TrainStep r = training_loss_given(tape, s, model, x0, t, eps, options, weights);
  return r;  // Algorithm 1 line 6 (until converged) is the caller's loop
}

TrainStep training_loss_given(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0,
                              const std::vector<int64_t>& t, const Tensor& eps, const TrainOptions& options,
                              const std::vector<double>& weights) {
  check_timesteps(s, x0, t, "training_loss_given");
  check_same_shape(x0, eps, "training_loss_given", "x0", "eps");
  TrainStep r;
  r.t = t;
  r.eps = eps;
  r.weights = weights;
  // Algorithm 1 line 5: gradient step on || eps - eps_theta(sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, t) ||^2
  r.x_t = q_sample(s, x0, r.t, r.eps);
  r.eps_theta = model(tape, constant(r.x_t), r.t);
  if (options.predict != PredictionTarget::eps || options.learned_variance || options.timesteps) {
    beyond_algorithm1_loss(tape, s, x0, options, r);  // the options' losses, below
    return r;
  }
  check_same_shape(r.x_t, r.eps_theta->value, "training_step", "x_t", "the model's eps_theta");
  r.loss = options.loss == LossType::simple ? loss_simple(tape, r.eps_theta, r.eps)
                                            : loss_weighted(tape, s, r.eps_theta, r.eps, r.t, options.variance);
  return r;
}

SampleResult sample(const Schedule& s, const EpsFn& model, const Shape& shape, uint64_t seed,
                    const SampleOptions& options) {
  DDPM_CHECK(shape.size() >= 1 && shape[0] >= 1 && numel_of(shape) > 0,
             "sample: shape " << to_string(shape) << " must be [N, C, H, W] with N >= 1 and no zero sizes");
  for (int64_t k : options.keep_t)
    DDPM_CHECK(k >= 0 && k <= s.T, "sample: keep_t = " << k << " is outside 0..T = 0.." << s.T);
  const int64_t N = shape[0];
  SampleResult r;
  auto keep = [&](int64_t t, const Tensor& x) {
    if (std::find(options.keep_t.begin(), options.keep_t.end(), t) != options.keep_t.end()) {
      r.kept_t.push_back(t);
      r.chain.push_back(x.clone());
    }
  };
  // Algorithm 2 line 1: x_T ~ N(0, I)
  Tensor x = keyed_normal(shape, RngKey{seed, make_stream(rng_sample_xT)}, options.first_index);
  keep(s.T, x);
  // Algorithm 2 line 2: for t = T, ..., 1 do
  for (int64_t t = s.T; t >= 1; t--) {
    const std::vector<int64_t> tv(N, t);
    // Algorithm 2 line 3: z ~ N(0, I) if t > 1, else z = 0
    Tensor z = t > 1 ? keyed_normal(shape, RngKey{seed, make_stream(rng_sample_z, t)}, options.first_index)
                     : Tensor(shape);
    // Algorithm 2 line 4: x_{t-1} = 1/sqrt(alpha_t) (x_t - (1 - alpha_t) / sqrt(1 - alpha-bar_t) eps_theta(x_t, t)) + sigma_t z
    x = p_sample(s, x, tv, model(x, tv), z, options.reverse);
    keep(t - 1, x);
    if (options.progress) options.progress(t);
  }  // Algorithm 2 line 5: end for
  // Algorithm 2 line 6: return x_0
  r.x0 = x;
  return r;
}

}  // namespace ddpm

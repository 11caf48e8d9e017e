#include "ddpm/diffusion/schedule.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

void Schedule::check_t(int64_t t, const char* op) const {
  DDPM_CHECK(t >= 1 && t <= T, op << ": timestep t = " << t << " is outside 1..T = 1.." << T
                                  << " (t is 1-based, as in the paper)");
}

void check_T(int64_t T, const std::string& what) {
  DDPM_CHECK(T >= 1 && T <= kMaxT, what << " " << T << " not in [1, " << kMaxT << "]");
}

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = {"linear", "cosine", "sigmoid", "quadratic"};
  return names;
}

// numpy.linspace(a, b, T)[t-1] for t = 1..T.
static double linspace_at(double a, double b, int64_t t, int64_t T) {
  return T == 1 ? a : a + (b - a) * static_cast<double>(t - 1) / static_cast<double>(T - 1);
}

std::vector<double> schedule_betas(const std::string& name, int64_t T, const ScheduleOptions& o) {
  check_T(T, "make_schedule: T =");
  std::vector<double> beta(T);
  if (name == "linear") {
    // slide "Forward (Diffusion) Process (1/2)": beta_1 = 1e-4 to beta_T = 0.02, linearly
    for (int64_t t = 1; t <= T; t++) beta[t - 1] = linspace_at(o.beta_start, o.beta_end, t, T);
  } else if (name == "quadratic") {
    // beta_t = linspace(sqrt(beta_1), sqrt(beta_T))^2
    for (int64_t t = 1; t <= T; t++) {
      double r = linspace_at(std::sqrt(o.beta_start), std::sqrt(o.beta_end), t, T);
      beta[t - 1] = r * r;
    }
  } else if (name == "sigmoid") {
    // beta_t = sigmoid(linspace(-6, 6)) * (beta_T - beta_1) + beta_1   (on beta, not on alpha_bar)
    for (int64_t t = 1; t <= T; t++) {
      double u = linspace_at(-6.0, 6.0, t, T);
      beta[t - 1] = 1.0 / (1.0 + std::exp(-u)) * (o.beta_end - o.beta_start) + o.beta_start;
    }
  } else if (name == "cosine") {
    // alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2)   (Nichol & Dhariwal 2021)
    auto f = [&](int64_t t) {
      double c = std::cos((static_cast<double>(t) / T + o.cosine_s) / (1.0 + o.cosine_s) * M_PI / 2.0);
      return c * c;
    };
    // beta_t = min(1 - alpha_bar(t) / alpha_bar(t-1), 0.999); the f(0) cancels in the ratio
    for (int64_t t = 1; t <= T; t++) beta[t - 1] = std::min(1.0 - f(t) / f(t - 1), o.max_beta);
  } else {
    std::string known;
    for (const auto& n : schedule_names()) known += (known.empty() ? "" : ", ") + n;
    DDPM_FAIL("make_schedule: unknown schedule '" << name << "'; use one of " << known);
  }
  return beta;
}

Schedule make_schedule(const std::string& name, int64_t T, const ScheduleOptions& options) {
  return schedule_from_betas(name, schedule_betas(name, T, options));
}

static std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// The float copies of the double tables, for the hot path.
static Schedule::Floats float_copies(const Schedule& s) {
  Schedule::Floats f;
  f.beta = to_float(s.beta);
  f.alpha = to_float(s.alpha);
  f.alpha_bar = to_float(s.alpha_bar);
  f.alpha_bar_prev = to_float(s.alpha_bar_prev);
  f.sqrt_alpha_bar = to_float(s.sqrt_alpha_bar);
  f.sqrt_one_minus_alpha_bar = to_float(s.sqrt_one_minus_alpha_bar);
  f.sqrt_recip_alpha = to_float(s.sqrt_recip_alpha);
  f.eps_coef = to_float(s.eps_coef);
  f.posterior_variance = to_float(s.posterior_variance);
  f.posterior_log_variance_clipped = to_float(s.posterior_log_variance_clipped);
  f.posterior_mean_coef1 = to_float(s.posterior_mean_coef1);
  f.posterior_mean_coef2 = to_float(s.posterior_mean_coef2);
  return f;
}

Schedule schedule_from_betas(const std::string& name, const std::vector<double>& betas) {
  const int64_t T = static_cast<int64_t>(betas.size());
  DDPM_CHECK(T >= 1, "schedule_from_betas: no betas (T = 0); T must be at least 1");
  for (int64_t t = 1; t <= T; t++)
    DDPM_CHECK(betas[t - 1] > 0.0 && betas[t - 1] < 1.0,
               "schedule_from_betas: beta_" << t << " = " << betas[t - 1] << " must be in (0, 1)");
  Schedule s;
  s.name = name;
  s.T = T;
  for (auto* v : {&s.beta, &s.alpha, &s.alpha_bar, &s.alpha_bar_prev, &s.sqrt_alpha_bar, &s.sqrt_one_minus_alpha_bar,
                  &s.sqrt_recip_alpha, &s.eps_coef, &s.posterior_variance, &s.posterior_log_variance_clipped,
                  &s.posterior_mean_coef1, &s.posterior_mean_coef2})
    v->assign(T + 1, 0.0);

  // t = 0: nothing diffused yet.
  s.alpha[0] = 1.0;
  s.alpha_bar[0] = 1.0;
  s.alpha_bar_prev[0] = 1.0;
  s.sqrt_alpha_bar[0] = 1.0;
  s.sqrt_recip_alpha[0] = 1.0;

  for (int64_t t = 1; t <= T; t++) {
    const double beta = betas[t - 1];
    s.beta[t] = beta;
    s.alpha[t] = 1.0 - beta;                               // slide "Forward (2/2)": alpha_t = 1 - beta_t
    s.alpha_bar[t] = s.alpha_bar[t - 1] * s.alpha[t];      // alpha-bar_t = prod_{s<=t} alpha_s (Ho et al. Eq. 4)
    s.alpha_bar_prev[t] = s.alpha_bar[t - 1];              // alpha-bar_{t-1}; alpha-bar_0 = 1
    s.sqrt_alpha_bar[t] = std::sqrt(s.alpha_bar[t]);       // mean factor of q(x_t|x_0), Eq. (4)
    s.sqrt_one_minus_alpha_bar[t] = std::sqrt(1.0 - s.alpha_bar[t]);  // std of q(x_t|x_0), Eq. (4)
    s.sqrt_recip_alpha[t] = 1.0 / std::sqrt(s.alpha[t]);   // A = 1/sqrt(alpha_t) (slide "Reverse (11/15)")
    s.eps_coef[t] = beta / s.sqrt_one_minus_alpha_bar[t];  // beta_t / sqrt(1 - alpha-bar_t) (slide "Reverse (12/15)")
    const double one_minus_ab = 1.0 - s.alpha_bar[t];
    // beta-tilde_t = (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t) beta_t   (slide "Reverse (8/15)"; Eq. 7)
    s.posterior_variance[t] = (1.0 - s.alpha_bar_prev[t]) / one_minus_ab * beta;
    // mu-tilde_t = coef1 x_0 + coef2 x_t   (slide "Reverse (9/15)"; Eq. 7)
    s.posterior_mean_coef1[t] = std::sqrt(s.alpha_bar_prev[t]) * beta / one_minus_ab;
    s.posterior_mean_coef2[t] = std::sqrt(s.alpha[t]) * (1.0 - s.alpha_bar_prev[t]) / one_minus_ab;
  }
  // log beta-tilde_t; beta-tilde_1 = 0, so t = 1 takes beta-tilde_2 (or beta_1 when T = 1),
  // as the original code and improved-diffusion do.
  for (int64_t t = 1; t <= T; t++) {
    double v = t > 1 ? s.posterior_variance[t] : (T > 1 ? s.posterior_variance[2] : s.beta[1]);
    s.posterior_log_variance_clipped[t] = std::log(v);
  }

  s.f = float_copies(s);
  return s;
}

}  // namespace ddpm

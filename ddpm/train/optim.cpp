#include "ddpm/train/optim.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"

namespace ddpm {

Adam::Adam(const ParamList& params, AdamConfig config) : params_(params), config_(config) {
  for (Parameter* p : params_) {
    m_.emplace_back(p->var->value.shape());
    v_.emplace_back(p->var->value.shape());
  }
}

void Adam::step(double lr) {
  ProfileScope timer(ProfileOp::adam);
  step_++;
  const double bias_correction1 = 1.0 - std::pow(config_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(config_.beta2, static_cast<double>(step_));
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float beta1 = static_cast<float>(config_.beta1), beta2 = static_cast<float>(config_.beta2);
  // 1 - beta in double, then rounded, as torch does (1 - 0.999f in float is 1.3e-5 off 0.001).
  const float one_minus_beta1 = static_cast<float>(1.0 - config_.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - config_.beta2);
  const float eps = static_cast<float>(config_.eps);
  for (size_t k = 0; k < params_.size(); k++) {
    float* p = params_[k]->var->value.data();
    const float* g = params_[k]->var->grad_ref().data();
    float* m = m_[k].data();
    float* v = v_[k].data();
    parallel_for(m_[k].numel(), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) {
        m[i] = m[i] * beta1 + one_minus_beta1 * g[i];                  // m = beta1 m + (1 - beta1) g
        v[i] = v[i] * beta2 + one_minus_beta2 * g[i] * g[i];           // v = beta2 v + (1 - beta2) g^2
        const float denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
        p[i] = p[i] - step_size * m[i] / denom;                         // p -= step_size m / denom
      }
    }, 16384);
  }
}

double clip_grad_norm(const ParamList& params, double max_norm) {
  double total = 0.0;  // summed in double, parameter by parameter: a fixed order
  for (Parameter* p : params) total += dot_ref(p->var->grad_ref().data(), p->var->grad.data(), p->var->grad.numel());
  const double norm = std::sqrt(total);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = static_cast<float>(coef);
    for (Parameter* p : params) {
      float* g = p->var->grad.data();
      for (int64_t i = 0; i < p->var->grad.numel(); i++) g[i] *= c;
    }
  }
  return norm;
}

double warmup_lr(double lr, int64_t step, int64_t warmup) {
  if (warmup <= 0) return lr;
  return lr * std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup));
}

const char* lr_schedule_name(LrSchedule s) {
  return s == LrSchedule::cosine ? "cosine" : s == LrSchedule::linear ? "linear" : "constant";
}

LrSchedule parse_lr_schedule(const std::string& s) {
  if (s == "constant") return LrSchedule::constant;
  if (s == "cosine") return LrSchedule::cosine;
  if (s == "linear") return LrSchedule::linear;
  DDPM_FAIL("unknown learning-rate schedule '" << s << "': use constant, cosine or linear");
}

double scheduled_lr(double peak, int64_t step, int64_t warmup, LrSchedule schedule, double floor, int64_t target) {
  if (step <= warmup || schedule == LrSchedule::constant || target == 0) return warmup_lr(peak, step, warmup);
  const double p = target <= warmup ? 1.0
                                    : std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(target - warmup));
  const double decay = schedule == LrSchedule::cosine ? 0.5 * (1.0 + std::cos(M_PI * p)) : 1.0 - p;
  return peak * (floor + (1.0 - floor) * decay);
}

EMA::EMA(const ParamList& params, double decay, double warmup) : decay_(decay), warmup_(warmup) {
  DDPM_CHECK(decay >= 0.0 && decay < 1.0, "EMA: decay " << decay << " must be in [0, 1)");
  DDPM_CHECK(warmup >= 1.0, "EMA: warm-up " << warmup << " must be at least 1");
  for (Parameter* p : params) shadow_.push_back(p->var->value.clone());
}

void EMA::update(const ParamList& params) {
  DDPM_CHECK(params.size() == shadow_.size(), "EMA: " << params.size() << " params, " << shadow_.size() << " shadows");
  const double k = static_cast<double>(updates_);
  const float d = static_cast<float>(std::min(decay_, (1.0 + k) / (warmup_ + k)));
  updates_++;
  for (size_t j = 0; j < params.size(); j++) {
    float* s = shadow_[j].data();
    const float* p = params[j]->var->value.data();
    for (int64_t i = 0; i < shadow_[j].numel(); i++) s[i] = d * s[i] + (1.0f - d) * p[i];  // shadow = d s + (1-d) p
  }
}

void EMA::swap_into(const ParamList& params) {
  DDPM_CHECK(params.size() == shadow_.size(), "EMA: " << params.size() << " params, " << shadow_.size() << " shadows");
  for (size_t j = 0; j < params.size(); j++) std::swap(params[j]->var->value, shadow_[j]);
}

}  // namespace ddpm

#include "ddpm/extensions/objectives.h"

#include "ddpm/core/check.h"
#include "ddpm/extensions/learned_variance.h"

namespace ddpm {

const char* loss_name(LossType l) { return l == LossType::weighted ? "weighted" : "simple"; }

LossType parse_loss(const std::string& s) {
  if (s == "simple") return LossType::simple;
  if (s == "weighted") return LossType::weighted;
  DDPM_FAIL("unknown loss '" << s << "': use simple (L_simple, Algorithm 1) or weighted (L_t with its weight)");
}

bool Objective::is_algorithm1() const {
  return loss == LossType::simple && predict == PredictionTarget::eps && !learned_variance && timesteps == nullptr;
}

ObjectiveStep objective_step(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0, uint64_t seed,
                             uint64_t step, int64_t first_index, const Objective& objective) {
  if (objective.is_algorithm1()) {
    // The paper's own step, so that the default run is Algorithm 1 to the bit.
    TrainStep p = training_step(tape, s, model, x0, seed, step, first_index);
    ObjectiveStep r;
    r.loss = p.loss;
    r.t = p.t;
    r.eps = p.eps;
    r.x_t = p.x_t;
    r.prediction = p.eps_theta;
    return r;
  }
  check_timesteps(s, x0, std::vector<int64_t>(x0.defined() && x0.dim() >= 1 ? x0.size(0) : 0, 1), "objective_step");
  const int64_t N = x0.size(0);
  const RngKey t_key{seed, make_stream(rng_train_t, step)};
  // t: Algorithm 1 line 3, or importance-sampled with weights 1 / (T p_t)
  std::vector<int64_t> t;
  std::vector<double> weights;
  if (objective.timesteps) objective.timesteps->sample(t_key, first_index, N, t, weights);
  else t = uniform_timesteps(s, t_key, first_index, N);
  // eps ~ N(0, I): Algorithm 1 line 4
  const Tensor eps = keyed_normal(x0.shape(), RngKey{seed, make_stream(rng_train_eps, step)}, first_index);
  return objective_loss(tape, s, model, x0, t, eps, weights, objective);
}

// A learned-variance model: L_hybrid = L_simple + lambda L_vlb on r.prediction's two halves.
static void hybrid_objective(Tape& tape, const Schedule& s, const Tensor& x0, const Tensor& target,
                             const Objective& objective, ObjectiveStep& r) {
  DDPM_CHECK(objective.loss == LossType::simple,
             "objective: the learned variance trains on L_hybrid = L_simple + lambda L_vlb; use loss simple");
  HybridLossOptions h;
  h.lambda = objective.vlb_lambda;
  h.predict = objective.predict;
  h.weights = r.weights;
  HybridLoss hl = hybrid_loss(tape, s, r.prediction, target, x0, r.x_t, r.t, h);
  r.loss = hl.loss;
  r.per_sample_loss = hl.per_sample;
  r.vb_bpd = hl.vb_bpd;
}

// The regression of r.prediction on the target: L_simple or L_t's weighted sum (Eq. 12),
// importance-weighted when r.weights is set.
static void regression_objective(Tape& tape, const Schedule& s, const Tensor& target, const Objective& objective,
                                 ObjectiveStep& r) {
  const std::vector<int64_t>& t = r.t;
  const std::vector<double>& weights = r.weights;
  DDPM_CHECK(r.prediction->value.shape() == r.x_t.shape(),
             "objective: the model's output " << r.prediction->value.shape_str() << " must have x_t's shape "
                                              << r.x_t.shape_str());
  DDPM_CHECK(objective.loss == LossType::simple || objective.predict == PredictionTarget::eps,
             "objective: the weighted loss L_t is an eps-MSE; with --predict " << target_name(objective.predict)
                                                                              << " use loss simple");
  const int64_t N = r.x_t.size(0), D = r.x_t.numel() / N;
  // Per-sample weights of the SSE: 1/D (simple: a per-sample mean) or L_t's scaling term (Eq. 12).
  std::vector<double> per_sse(N);
  for (int64_t i = 0; i < N; i++)
    per_sse[i] = objective.loss == LossType::simple ? 1.0 / D : loss_weight(s, t[i], objective.variance);
  r.per_sample_loss.assign(N, 0.0);
  for (int64_t i = 0; i < N; i++) {
    double sse = 0.0;
    for (int64_t j = i * D; j < (i + 1) * D; j++) {
      const double d = static_cast<double>(target[j]) - r.prediction->value[j];
      sse += d * d;
    }
    r.per_sample_loss[i] = per_sse[i] * sse;
  }
  if (weights.empty()) {
    // || target - out ||^2: L_simple with the target swapped, or L_t's weighted sum (Eq. 12)
    r.loss = objective.loss == LossType::simple ? loss_simple(tape, r.prediction, target)
                                                : loss_weighted(tape, s, r.prediction, target, t, objective.variance);
    return;
  }
  // (1/N) sum_i w_i loss_i: importance-weighted, unbiased for the uniform-t average
  std::vector<double> w(N);
  for (int64_t i = 0; i < N; i++) w[i] = weights[i] * per_sse[i];
  r.loss = weighted_sse(tape, r.prediction, target, w);
}

ObjectiveStep objective_loss(Tape& tape, const Schedule& s, const TapeEpsFn& model, const Tensor& x0,
                             const std::vector<int64_t>& t, const Tensor& eps, const std::vector<double>& weights,
                             const Objective& objective) {
  check_timesteps(s, x0, t, "objective_loss");
  ObjectiveStep r;
  r.t = t;
  r.eps = eps;
  r.weights = weights;
  r.x_t = q_sample(s, x0, t, eps);
  r.prediction = model(tape, constant(r.x_t), t);
  // What the network regresses to: eps, x_0 or v
  const Tensor target = training_target(objective.predict, s, x0, eps, t);
  if (objective.learned_variance) hybrid_objective(tape, s, x0, target, objective, r);
  else regression_objective(tape, s, target, objective, r);
  return r;
}

}  // namespace ddpm

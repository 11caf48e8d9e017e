#include "ddpm/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "ddpm/core/check.h"

namespace ddpm {

namespace {

enum TrainRngPurpose : uint64_t {
  rng_shuffle = 0x7e01,     // the data permutation of epoch e: Generator(seed, make_stream(rng_shuffle, e))
  rng_dropout = 0x7e02,     // dropout masks of step k: make_stream(rng_dropout, k), then the block id
  rng_label_drop = 0x7e03,  // classifier-free guidance label drop of step k, index i
};

}  // namespace

namespace {
// The config, validated: the Trainer's first member is initialized with it, so nothing
// (the schedule's arrays, the U-Net) is allocated for a config out of bounds.
const TrainConfig& validated(const TrainConfig& c) {
  c.validate();
  return c;
}
}  // namespace

Trainer::Trainer(const TrainConfig& config, Dataset data, const UNetConfig* model_config)
    : config_(validated(config)), data_(std::move(data)), schedule_(make_schedule(config_.schedule, config_.T)) {
  DDPM_CHECK(data_.size() > 0, "train: the dataset is empty");
  DDPM_CHECK(static_cast<int64_t>(data_.labels.size()) == data_.size(),
             "train: " << data_.labels.size() << " labels for " << data_.size() << " images");
  UNetConfig mc = model_config ? *model_config : unet_config(config_.model);
  if (config_.conditional) mc.num_classes = 10;
  if (config_.learned_variance) mc.learned_variance = true;
  // --ch, --res-blocks, --dropout: the named model's own unless given (validate() checks the result)
  if (config_.ch > 0) mc.ch = config_.ch;
  if (config_.res_blocks > 0) mc.num_res_blocks = config_.res_blocks;
  if (config_.dropout >= 0) mc.dropout = static_cast<float>(config_.dropout);
  if (config_.timesteps == TimestepSampling::importance) timestep_sampler_ = std::make_unique<TimestepSampler>(config_.T);
  const Shape& s = data_.images.shape();
  DDPM_CHECK(s.size() == 4 && s[1] == mc.in_ch && s[2] == mc.image_size && s[3] == mc.image_size,
             "train: images " << data_.images.shape_str() << " do not fit model '" << mc.name << "' ([N, " << mc.in_ch
                              << ", " << mc.image_size << ", " << mc.image_size << "])");
  model_ = std::make_unique<UNet>(mc, config_.seed);
  params_ = model_->parameters();
  adam_ = std::make_unique<Adam>(params_, AdamConfig{config_.lr});
  ema_ = std::make_unique<EMA>(params_, config_.ema);
}

void Trainer::set_target(int64_t steps) {
  TrainConfig c = config_;
  c.steps = steps;
  c.validate();
  config_.steps = steps;
}

void Trainer::set_minutes(double minutes) {
  TrainConfig c = config_;
  c.minutes = minutes;
  c.steps = 0;
  c.validate();
  config_ = c;
}

void Trainer::set_lr(double lr) {
  TrainConfig c = config_;
  c.lr = lr;
  c.validate();
  if (lr == config_.lr) return;
  if (lr_history_.empty()) lr_history_.emplace_back(0, config_.lr);
  if (lr_history_.back().first == step_) lr_history_.back().second = lr;  // changed again before a step
  else lr_history_.emplace_back(step_, lr);
  config_.lr = lr;
}

double Trainer::epoch_progress() const {
  return static_cast<double>(epoch_) + static_cast<double>(position_) / static_cast<double>(data_.size());
}

const std::vector<int64_t>& Trainer::permutation(int64_t epoch) {
  if (perm_epoch_ != epoch) {
    // Fisher-Yates with the epoch's own generator: the order of epoch e depends only on
    // (seed, e), so a resumed run sees the same batches.
    const int64_t n = data_.size();
    perm_.resize(n);
    for (int64_t i = 0; i < n; i++) perm_[i] = i;
    Generator gen(config_.seed, make_stream(rng_shuffle, static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; i--) std::swap(perm_[i], perm_[gen.below(static_cast<uint64_t>(i + 1))]);
    perm_epoch_ = epoch;
  }
  return perm_;
}

void Trainer::next_batch(Tensor& x0, std::vector<int64_t>& labels) {
  const Shape& s = data_.images.shape();
  const int64_t B = config_.batch, D = s[1] * s[2] * s[3];
  x0 = Tensor({B, s[1], s[2], s[3]});
  labels.resize(B);
  for (int64_t i = 0; i < B; i++) {
    const int64_t j = permutation(epoch_)[position_];
    std::copy(data_.images.data() + j * D, data_.images.data() + (j + 1) * D, x0.data() + i * D);
    labels[i] = data_.labels[j];
    if (++position_ == data_.size()) {
      position_ = 0;
      epoch_++;
    }
  }
}

double Trainer::step() {
  const int64_t saved_epoch = epoch_, saved_position = position_;
  // Algorithm 1, line 2: x_0 ~ q(x_0), a batch from the shuffled data.
  Tensor x0;
  std::vector<int64_t> labels;
  next_batch(x0, labels);
  if (step_ + 1 == nan_step_) x0[nan_sample_ * (x0.numel() / x0.size(0))] = NAN;  // debug: inject_nan
  const uint64_t k = static_cast<uint64_t>(step_);
  const int64_t null_class = model_->config().num_classes;
  if (config_.conditional) {
    // Classifier-free guidance (Ho & Salimans 2022): drop the label to null with p_uncond.
    RngKey drop{config_.seed, make_stream(rng_label_drop, k)};
    for (size_t i = 0; i < labels.size(); i++)
      if (uniform(drop, i) < config_.p_uncond) labels[i] = null_class;
  }
  const ForwardContext ctx{true, RngKey{config_.seed, make_stream(rng_dropout, k)}};
  TapeEpsFn network = [&](Tape& tape, const Var& x_t, const std::vector<int64_t>& t) {
    return model_->forward(tape, x_t, t, ctx, config_.conditional ? &labels : nullptr);
  };

  zero_grad(params_);
  Tape tape;
  Objective objective;
  objective.loss = config_.loss;
  objective.variance = config_.variance;
  objective.predict = config_.predict;
  objective.learned_variance = config_.learned_variance;
  objective.timesteps = timestep_sampler_.get();
  // Algorithm 1, lines 3-5: t, eps and the loss (Algorithm 1 itself unless an option is on).
  ObjectiveStep ts = objective_step(tape, schedule_, network, x0, config_.seed, k, 0, objective);
  const double loss = ts.loss->value[0];

  auto fail = [&](const std::string& what) {
    epoch_ = saved_epoch;
    position_ = saved_position;
    std::ostringstream os;
    os << "step " << step_ + 1 << ": " << what << ".";
    // Which samples went bad, by their timestep.
    const Tensor& out = ts.prediction->value;
    const int64_t N = ts.x_t.size(0), D = ts.x_t.numel() / N, D_out = out.numel() / N;
    std::vector<int64_t> bad_t;
    for (int64_t i = 0; i < N; i++) {
      bool bad = false;
      for (int64_t j = 0; j < D && !bad; j++) bad = !std::isfinite(ts.x_t[i * D + j]);
      for (int64_t j = 0; j < D_out && !bad; j++) bad = !std::isfinite(out[i * D_out + j]);
      if (bad) bad_t.push_back(ts.t[i]);
    }
    if (!bad_t.empty()) {
      os << " Samples with a non-finite x_t or model output have t = [";
      for (size_t i = 0; i < bad_t.size() && i < 16; i++) os << (i ? ", " : "") << bad_t[i];
      os << (bad_t.size() > 16 ? ", ...]." : "].");
    }
    std::string first = tape.first_nonfinite();
    os << (first.empty() ? " Every op's output was finite." : " First non-finite value: " + first + ".");
    if (first.empty()) {
      // The forward pass was finite, so backward went wrong: where, in backward order.
      std::string grad = tape.first_nonfinite_grad();
      if (!grad.empty()) os << " First non-finite gradient (backward order): of " << grad << ".";
      for (Parameter* p : params_) {
        const Tensor& g = p->var->grad;
        bool bad = false;
        for (int64_t i = 0; g.defined() && i < g.numel() && !bad; i++) bad = !std::isfinite(g[i]);
        if (bad) {
          os << " First parameter with a non-finite gradient: " << p->name << " " << g.shape_str() << ".";
          break;
        }
      }
    }
    os << " Resume from the last checkpoint with a lower --lr, or check the data.";
    throw NonFiniteError(os.str());
  };
  if (!std::isfinite(loss)) fail("the loss is " + std::to_string(loss));

  tape.backward(ts.loss);
  const double max_norm = config_.grad_clip > 0 ? config_.grad_clip : std::numeric_limits<double>::infinity();
  const double grad_norm = clip_grad_norm(params_, max_norm);
  if (!std::isfinite(grad_norm)) fail("the gradient norm is " + std::to_string(grad_norm));

  // The optimizer: Adam with linear warm-up, then the EMA of the weights.
  adam_->step(scheduled_lr(config_.lr, step_ + 1, config_.warmup, config_.lr_schedule, config_.lr_floor, config_.steps));
  ema_->update(params_);
  if (timestep_sampler_) timestep_sampler_->update(ts.t, ts.per_sample_loss);  // E[L_t^2] history
  step_++;
  return loss;
}

void Trainer::inject_nan(int64_t step, int64_t sample) {
  DDPM_CHECK(step >= 1 && sample >= 0 && sample < config_.batch,
             "inject_nan: step " << step << " must be >= 1 and sample " << sample << " in 0.." << config_.batch - 1);
  nan_step_ = step;
  nan_sample_ = sample;
}

void Trainer::save_checkpoint(const std::string& path) {
  NamedTensors tensors;
  for (size_t i = 0; i < params_.size(); i++) tensors.emplace_back(params_[i]->name, params_[i]->var->value);
  for (size_t i = 0; i < params_.size(); i++) tensors.emplace_back("ema." + params_[i]->name, ema_->shadow()[i]);
  for (size_t i = 0; i < params_.size(); i++) tensors.emplace_back("adam.m." + params_[i]->name, adam_->m()[i]);
  for (size_t i = 0; i < params_.size(); i++) tensors.emplace_back("adam.v." + params_[i]->name, adam_->v()[i]);
  if (timestep_sampler_) {  // --timesteps importance: the loss history, for an exact resume
    Tensor history, count;
    timestep_sampler_->state(history, count);
    tensors.emplace_back("timesteps.history", history);
    tensors.emplace_back("timesteps.count", count);
  }
  TrainState state;
  state.step = step_;
  state.epoch = epoch_;
  state.position = position_;
  state.adam_steps = adam_->steps();
  state.ema_updates = ema_->updates();
  state.data_size = data_.size();
  state.lr_history = lr_history_;
  save_safetensors(path, tensors, checkpoint_metadata(model_->config(), config_, state));
}

void Trainer::load_checkpoint(const std::string& path) { load_checkpoint(load_safetensors(path)); }

void Trainer::load_checkpoint(const SafeTensors& st) {
  const std::string& path = st.source;
  // Everything is checked before anything is changed: a refused file leaves the trainer as it was.
  const CheckpointContents c = validate_checkpoint(st, &model_->config(), &config_);
  DDPM_CHECK(c.state.data_size == data_.size(), path << ": trained on " << c.state.data_size
                                                     << " images, this dataset has " << data_.size()
                                                     << " (use the same --dataset and --data)");
  for (size_t i = 0; i < params_.size(); i++) {
    params_[i]->var->value.copy_(st.at(params_[i]->name));
    ema_->shadow()[i].copy_(st.at("ema." + params_[i]->name));
    adam_->m()[i].copy_(st.at("adam.m." + params_[i]->name));
    adam_->v()[i].copy_(st.at("adam.v." + params_[i]->name));
  }
  step_ = c.state.step;
  epoch_ = c.state.epoch;
  position_ = c.state.position;
  lr_history_ = c.state.lr_history;
  if (timestep_sampler_) timestep_sampler_->set_state(st.at("timesteps.history"), st.at("timesteps.count"));
  adam_->set_steps(c.state.adam_steps);
  ema_->set_updates(c.state.ema_updates);
}

Resumed resume_trainer(const std::vector<std::string>& candidates, const Dataset& data,
                       const ResumeOverrides& overrides, const std::function<void(const std::string&)>& warn) {
  DDPM_CHECK(!candidates.empty(), "resume: no checkpoint to resume from");
  Resumed r;
  for (size_t i = 0; i < candidates.size() && !r.trainer; i++) {
    const std::string& path = candidates[i];
    try {
      SafeTensors st = load_safetensors(path);
      const CheckpointContents c = validate_checkpoint(st);
      r.trainer = std::make_unique<Trainer>(c.train, data, &c.model);
      r.trainer->load_checkpoint(st);
      r.path = path;
    } catch (const Error& e) {
      r.trainer.reset();
      if (i + 1 == candidates.size()) throw;
      if (warn) warn("skipping " + path + ": " + e.what());
    }
  }
  if (overrides.has_lr) r.trainer->set_lr(overrides.lr);
  if (overrides.has_steps) r.trainer->set_target(overrides.steps);
  if (overrides.has_minutes) r.trainer->set_minutes(overrides.minutes);
  return r;
}

std::unique_ptr<UNet> Trainer::ema_model() const {
  auto copy = std::make_unique<UNet>(model_->config());
  ParamList ps = copy->parameters();
  for (size_t i = 0; i < ps.size(); i++) ps[i]->var->value.copy_(ema_->shadow()[i]);
  return copy;
}

}  // namespace ddpm

#include "ddpm/train.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <sstream>

#include "ddpm/check.h"
#include "ddpm/guidance.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/targets.h"

namespace ddpm {

namespace {

enum TrainRngPurpose : uint64_t {
  rng_shuffle = 0x7e01,     // the data permutation of epoch e: Generator(seed, make_stream(rng_shuffle, e))
  rng_dropout = 0x7e02,     // dropout masks of step k: make_stream(rng_dropout, k), then the block id
  rng_label_drop = 0x7e03,  // classifier-free guidance label drop of step k, index i
};

constexpr const char* kFormat = "ddpm.checkpoint";
constexpr const char* kFormatVersion = "1";

std::string format_double(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

const std::string& meta_get(const std::map<std::string, std::string>& m, const std::string& key,
                            const std::string& source) {
  auto it = m.find(key);
  DDPM_CHECK(it != m.end(), source << ": metadata has no '" << key << "' (is this a ddpm checkpoint?)");
  return it->second;
}

// Integers as written by std::to_string: an optional '-' and digits, nothing else.
int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& source) {
  const std::string& s = meta_get(m, key, source);
  const size_t digits = !s.empty() && s[0] == '-' ? 1 : 0;
  if (s.size() > digits && std::isdigit(static_cast<unsigned char>(s[digits]))) {
    try {
      size_t used = 0;
      long long v = std::stoll(s, &used);
      if (used == s.size()) return v;
    } catch (...) {
    }
  }
  DDPM_FAIL(source << ": metadata '" << key << "' = '" << s
                   << "' is not a 64-bit integer; the file is corrupt or not a ddpm checkpoint");
}

uint64_t meta_uint(const std::map<std::string, std::string>& m, const std::string& key, const std::string& source) {
  const std::string& s = meta_get(m, key, source);
  if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) {
    try {
      size_t used = 0;
      unsigned long long v = std::stoull(s, &used);
      if (used == s.size()) return v;
    } catch (...) {
    }
  }
  DDPM_FAIL(source << ": metadata '" << key << "' = '" << s
                   << "' is not an unsigned 64-bit integer; the file is corrupt or not a ddpm checkpoint");
}

double meta_double(const std::map<std::string, std::string>& m, const std::string& key, const std::string& source) {
  const std::string& s = meta_get(m, key, source);
  if (!s.empty() && !std::isspace(static_cast<unsigned char>(s[0]))) {
    try {
      size_t used = 0;
      double v = std::stod(s, &used);
      if (used == s.size() && std::isfinite(v)) return v;
    } catch (...) {
    }
  }
  DDPM_FAIL(source << ": metadata '" << key << "' = '" << s
                   << "' is not a finite number; the file is corrupt or not a ddpm checkpoint");
}

LossType parse_loss(const std::string& s) {
  if (s == "simple") return LossType::simple;
  if (s == "weighted") return LossType::weighted;
  DDPM_FAIL("unknown loss '" << s << "': use simple (L_simple, Algorithm 1) or weighted (L_t with its weight)");
}

}  // namespace

std::map<std::string, std::string> TrainConfig::to_metadata() const {
  std::map<std::string, std::string> m{{"train.model", model},
          {"train.batch", std::to_string(batch)},
          {"train.lr", format_double(lr)},
          {"train.warmup", std::to_string(warmup)},
          {"train.grad_clip", format_double(grad_clip)},
          {"train.ema", format_double(ema)},
          {"train.schedule", schedule},
          {"train.T", std::to_string(T)},
          {"train.seed", std::to_string(seed)},
          {"train.loss", loss},
          {"train.variance", variance},
          {"train.conditional", conditional ? "1" : "0"},
          {"train.p_uncond", format_double(p_uncond)}};
  // Beyond Algorithm 2: only when not the default (a default checkpoint stays as it was).
  if (predict != "eps") m["train.predict"] = predict;
  if (learned_variance) m["train.learned_variance"] = "1";
  if (timesteps != "uniform") m["train.timesteps"] = timesteps;
  return m;
}

TrainConfig TrainConfig::from_metadata(const std::map<std::string, std::string>& m, const std::string& source) {
  const std::string& src = source;
  TrainConfig c;
  c.model = meta_get(m, "train.model", src);
  c.batch = meta_int(m, "train.batch", src);
  c.lr = meta_double(m, "train.lr", src);
  c.warmup = meta_int(m, "train.warmup", src);
  c.grad_clip = meta_double(m, "train.grad_clip", src);
  c.ema = meta_double(m, "train.ema", src);
  c.schedule = meta_get(m, "train.schedule", src);
  c.T = meta_int(m, "train.T", src);
  c.seed = meta_uint(m, "train.seed", src);
  c.loss = meta_get(m, "train.loss", src);
  c.variance = meta_get(m, "train.variance", src);
  c.conditional = meta_int(m, "train.conditional", src) != 0;
  c.p_uncond = meta_double(m, "train.p_uncond", src);
  try {
    c.validate();
  } catch (const Error& e) {
    DDPM_FAIL(src << ": the training config in its metadata is invalid: " << e.what()
                  << "; the file is corrupt or was not written by ddpm");
  }
  return c;
}

void TrainConfig::validate() const {
  // Bounds far beyond any sensible run; they keep batch * image and the schedule's
  // arrays allocatable and the step counters far from overflow.
  DDPM_CHECK(batch >= 1 && batch <= 65536, "train: --batch " << batch << " not in 1..65536");
  DDPM_CHECK(lr > 0 && std::isfinite(lr), "train: --lr " << lr << " must be positive and finite");
  DDPM_CHECK(warmup >= 0, "train: --warmup " << warmup << " must be non-negative");
  DDPM_CHECK(grad_clip >= 0 && std::isfinite(grad_clip), "train: --grad-clip " << grad_clip << " must be >= 0 (0: off)");
  DDPM_CHECK(ema >= 0 && ema < 1, "train: --ema " << ema << " not in [0, 1)");
  DDPM_CHECK(T >= 1 && T <= 100000, "train: --T " << T << " not in 1..100000");
  DDPM_CHECK(p_uncond >= 0 && p_uncond <= 1, "train: --p-uncond " << p_uncond << " not in [0, 1]");
  schedule_betas(schedule, 1);  // throws for an unknown schedule name
  parse_loss(loss);
  parse_variance(variance);
}

Trainer::Trainer(const TrainConfig& config, Dataset data, const UNetConfig* model_config)
    : config_(config), data_(std::move(data)), schedule_(make_schedule(config.schedule, config.T)) {
  config_.validate();
  DDPM_CHECK(data_.size() > 0, "train: the dataset is empty");
  DDPM_CHECK(static_cast<int64_t>(data_.labels.size()) == data_.size(),
             "train: " << data_.labels.size() << " labels for " << data_.size() << " images");
  UNetConfig mc = model_config ? *model_config : unet_config(config_.model);
  if (config_.conditional) mc.num_classes = 10;
  parse_target(config_.predict);
  if (config_.learned_variance) mc.learned_variance = true;
  DDPM_CHECK(config_.timesteps == "uniform" || config_.timesteps == "importance",
             "train: --timesteps '" << config_.timesteps << "': use uniform (Algorithm 1) or importance");
  DDPM_CHECK(config_.loss == "simple" || (config_.predict == "eps" && !config_.learned_variance),
             "train: --loss weighted is an eps-MSE; with --predict " << config_.predict
                 << (config_.learned_variance ? " and --learned-variance (L_hybrid)" : "") << " use --loss simple");
  if (config_.timesteps == "importance") timestep_sampler_ = std::make_unique<TimestepSampler>(config_.T);
  const Shape& s = data_.images.shape();
  DDPM_CHECK(s.size() == 4 && s[1] == mc.in_ch && s[2] == mc.image_size && s[3] == mc.image_size,
             "train: images " << data_.images.shape_str() << " do not fit model '" << mc.name << "' ([N, " << mc.in_ch
                              << ", " << mc.image_size << ", " << mc.image_size << "])");
  model_ = std::make_unique<UNet>(mc, config_.seed);
  params_ = model_->parameters();
  adam_ = std::make_unique<Adam>(params_, AdamConfig{config_.lr});
  ema_ = std::make_unique<EMA>(params_, config_.ema);
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
  TapeEpsFn eps_theta = [&](Tape& tape, const Var& x_t, const std::vector<int64_t>& t) {
    return model_->forward(tape, x_t, t, ctx, config_.conditional ? &labels : nullptr);
  };

  zero_grad(params_);
  Tape tape;
  TrainOptions options;
  options.loss = parse_loss(config_.loss);
  options.variance = parse_variance(config_.variance);
  options.predict = parse_target(config_.predict);
  options.learned_variance = config_.learned_variance;
  options.timesteps = timestep_sampler_.get();
  // Algorithm 1, lines 3-5: t, eps and the loss (diffusion.h).
  TrainStep ts = training_step(tape, schedule_, eps_theta, x0, config_.seed, k, options);
  const double loss = ts.loss->value[0];

  auto fail = [&](const std::string& what) {
    epoch_ = saved_epoch;
    position_ = saved_position;
    std::ostringstream os;
    os << "step " << step_ + 1 << ": " << what << ".";
    // Which samples went bad, by their timestep.
    const int64_t N = ts.x_t.size(0), D = ts.x_t.numel() / N;
    std::vector<int64_t> bad_t;
    for (int64_t i = 0; i < N; i++) {
      bool bad = false;
      for (int64_t j = 0; j < D && !bad; j++)
        bad = !std::isfinite(ts.eps_theta->value[i * D + j]) || !std::isfinite(ts.x_t[i * D + j]);
      if (bad) bad_t.push_back(ts.t[i]);
    }
    if (!bad_t.empty()) {
      os << " Samples with non-finite x_t or eps_theta have t = [";
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
  adam_->step(warmup_lr(config_.lr, step_ + 1, config_.warmup));
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
  std::map<std::string, std::string> meta = model_->config().to_metadata();
  for (auto& kv : config_.to_metadata()) meta.insert(kv);
  meta["format"] = kFormat;
  meta["format_version"] = kFormatVersion;
  meta["state.step"] = std::to_string(step_);
  meta["state.epoch"] = std::to_string(epoch_);
  meta["state.position"] = std::to_string(position_);
  meta["state.adam_steps"] = std::to_string(adam_->steps());
  meta["state.ema_updates"] = std::to_string(ema_->updates());
  meta["state.data_size"] = std::to_string(data_.size());
  save_safetensors(path, tensors, meta);
}

static void check_format(const SafeTensors& st) {
  auto it = st.metadata.find("format");
  DDPM_CHECK(it != st.metadata.end() && it->second == kFormat,
             st.source << ": not a ddpm training checkpoint (metadata 'format' is not '" << kFormat << "')");
  const std::string& v = meta_get(st.metadata, "format_version", st.source);
  DDPM_CHECK(v == kFormatVersion, st.source << ": checkpoint format version " << v << ", this build reads "
                                            << kFormatVersion);
}

void Trainer::load_checkpoint(const std::string& path) { load_checkpoint(load_safetensors(path)); }

void Trainer::load_checkpoint(const SafeTensors& st) {
  const std::string& path = st.source;
  check_format(st);
  // The run's configuration must be the one in the file.
  for (auto& kv : model_->config().to_metadata()) {
    const std::string& theirs = meta_get(st.metadata, kv.first, path);
    DDPM_CHECK(theirs == kv.second, path << ": the checkpoint has " << kv.first << " = " << theirs << ", this run has "
                                         << kv.second << " (resume with the checkpoint's own settings)");
  }
  for (auto& kv : config_.to_metadata()) {
    const std::string& theirs = meta_get(st.metadata, kv.first, path);
    DDPM_CHECK(theirs == kv.second, path << ": the checkpoint has " << kv.first << " = " << theirs << ", this run has "
                                         << kv.second << " (resume with the checkpoint's own settings)");
  }
  // And the options that are written only when on (TrainConfig::to_metadata) must be off here too.
  const std::map<std::string, std::string> ours = config_.to_metadata();
  for (auto& kv : st.metadata)
    if (kv.first.compare(0, 6, "train.") == 0)
      DDPM_CHECK(ours.count(kv.first), path << ": the checkpoint has " << kv.first << " = " << kv.second
                                            << ", this run does not set it (resume with the checkpoint's own settings)");
  const int64_t data_size = meta_int(st.metadata, "state.data_size", path);
  DDPM_CHECK(data_size == data_.size(), path << ": trained on " << data_size << " images, this dataset has "
                                             << data_.size() << " (use the same --dataset and --data)");
  std::vector<std::pair<std::string, Shape>> expected;
  for (const char* prefix : {"", "ema.", "adam.m.", "adam.v."})
    for (Parameter* p : params_) expected.emplace_back(prefix + p->name, p->var->value.shape());
  check_tensor_shapes(st, expected, "was it trained with another --model?");
  // The counters, all checked before anything is changed: a refused file leaves the
  // trainer as it was. Adam and the EMA update at most once per step.
  const int64_t step = meta_int(st.metadata, "state.step", path);
  const int64_t epoch = meta_int(st.metadata, "state.epoch", path);
  const int64_t position = meta_int(st.metadata, "state.position", path);
  const int64_t adam_steps = meta_int(st.metadata, "state.adam_steps", path);
  const int64_t ema_updates = meta_int(st.metadata, "state.ema_updates", path);
  const int64_t max_step = int64_t(1) << 53;  // far beyond any run, far from overflow
  DDPM_CHECK(step >= 0 && step <= max_step && epoch >= 0 && epoch <= max_step && position >= 0 &&
                 position < data_.size() && adam_steps >= 0 && adam_steps <= step && ema_updates >= 0 &&
                 ema_updates <= step,
             path << ": inconsistent training state (step " << step << ", epoch " << epoch << ", position " << position
                  << ", adam_steps " << adam_steps << ", ema_updates " << ema_updates << ", " << data_.size()
                  << " images); the file is corrupt: resume from an older checkpoint");
  for (size_t i = 0; i < params_.size(); i++) {
    params_[i]->var->value.copy_(st.at(params_[i]->name));
    ema_->shadow()[i].copy_(st.at("ema." + params_[i]->name));
    adam_->m()[i].copy_(st.at("adam.m." + params_[i]->name));
    adam_->v()[i].copy_(st.at("adam.v." + params_[i]->name));
  }
  step_ = step;
  epoch_ = epoch;
  position_ = position;
  if (timestep_sampler_) timestep_sampler_->set_state(st.at("timesteps.history"), st.at("timesteps.count"));
  adam_->set_steps(adam_steps);
  ema_->set_updates(ema_updates);
}

std::unique_ptr<UNet> Trainer::ema_model() const {
  auto copy = std::make_unique<UNet>(model_->config());
  ParamList ps = copy->parameters();
  for (size_t i = 0; i < ps.size(); i++) ps[i]->var->value.copy_(ema_->shadow()[i]);
  return copy;
}

EpsFn unet_eps_fn(UNet& model, const std::vector<int64_t>* labels, double guidance) {
  return [&model, labels, guidance](const Tensor& x_t, const std::vector<int64_t>& t) -> ModelOutput {
    const UNetConfig& c = model.config();
    const int64_t N = x_t.size(0);
    Tape tape = Tape::no_grad();
    auto run = [&](const std::vector<int64_t>* ls) {
      return model.forward(tape, constant(x_t), t, ForwardContext{}, ls)->value;
    };
    // Learned variance: channels [0, C) are eps, [C, 2C) the raw r; v = (r + 1) / 2 is the
    // interpolation learned_range takes (improved-diffusion's convention, learned_variance.h).
    auto split = [&](const Tensor& out) {
      if (!c.learned_variance) return ModelOutput(out);
      const int64_t C = c.in_ch, HW = x_t.size(2) * x_t.size(3);
      Tensor eps({N, C, x_t.size(2), x_t.size(3)}), v({N, C, x_t.size(2), x_t.size(3)});
      for (int64_t n = 0; n < N; n++) {
        std::copy(out.data() + (n * 2 * C) * HW, out.data() + (n * 2 * C + C) * HW, eps.data() + n * C * HW);
        for (int64_t j = 0; j < C * HW; j++) v[n * C * HW + j] = 0.5f * (out[(n * 2 * C + C) * HW + j] + 1.0f);
      }
      return ModelOutput(eps, v);
    };
    if (c.num_classes > 0) {
      std::vector<int64_t> null_labels(N, c.num_classes);
      const std::vector<int64_t>& cond = labels ? *labels : null_labels;
      DDPM_CHECK(static_cast<int64_t>(cond.size()) == N, "sample: " << cond.size() << " labels for " << N << " images");
      ModelOutput out = split(run(&cond));
      if (guidance != 0.0 && labels) {
        // Classifier-free guidance: eps = (1 + w) eps(x, c) - w eps(x, null), on eps only (guidance.h).
        out.eps = guided_eps(out.eps, split(run(&null_labels)).eps, guidance);
      }
      return out;
    }
    DDPM_CHECK(labels == nullptr, "sample: class labels given to an unconditional model");
    return split(run(nullptr));
  };
}

PredictionTarget prediction_target(const std::map<std::string, std::string>& metadata) {
  auto it = metadata.find("train.predict");
  return it == metadata.end() ? PredictionTarget::eps : parse_target(it->second);
}

VarianceType checkpoint_variance(const UNetConfig& config, const std::map<std::string, std::string>& metadata,
                                 const std::string& requested) {
  if (!requested.empty()) return parse_variance(requested);
  if (config.learned_variance) return VarianceType::learned_range;
  auto it = metadata.find("train.variance");
  return it == metadata.end() ? VarianceType::fixed_large : parse_variance(it->second);
}

BatchEpsFn unet_batch_eps_fn(UNet& model, const Schedule& s, PredictionTarget predict,
                             std::function<int64_t(int64_t)> label_of, double guidance) {
  UNet* m = &model;
  const Schedule* schedule = &s;
  return [m, schedule, predict, label_of, guidance](int64_t first, int64_t count) -> EpsFn {
    if (m->config().num_classes == 0 || !label_of) return as_eps_fn(*schedule, unet_eps_fn(*m), predict);
    auto labels = std::make_shared<std::vector<int64_t>>();
    for (int64_t i = 0; i < count; i++) labels->push_back(label_of(first + i));
    EpsFn eps = as_eps_fn(*schedule, unet_eps_fn(*m, labels.get(), guidance), predict);
    return [labels, eps](const Tensor& x_t, const std::vector<int64_t>& t) { return eps(x_t, t); };  // keeps labels alive
  };
}

std::unique_ptr<UNet> load_model(const std::string& path, bool use_ema, std::map<std::string, std::string>* metadata,
                                 bool* loaded_ema) {
  SafeTensors st = load_safetensors(path);
  UNetConfig config = UNetConfig::from_metadata(st.metadata, path);
  auto model = std::make_unique<UNet>(config);
  const bool has_ema = use_ema && st.find("ema." + model->parameters()[0]->name) != nullptr;
  const std::string prefix = has_ema ? "ema." : "";
  std::vector<std::pair<std::string, Shape>> expected;
  for (Parameter* p : model->parameters()) expected.emplace_back(prefix + p->name, p->var->value.shape());
  check_tensor_shapes(st, expected, "was it trained with another --model?");
  for (Parameter* p : model->parameters()) p->var->value.copy_(st.at(prefix + p->name));
  if (metadata) *metadata = st.metadata;
  if (loaded_ema) *loaded_ema = has_ema;
  return model;
}

}  // namespace ddpm

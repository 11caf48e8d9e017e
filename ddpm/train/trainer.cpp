#include "ddpm/train/trainer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/extensions/prediction_targets.h"

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
int64_t parse_int(const std::string& s) {
  const size_t digits = !s.empty() && s[0] == '-' ? 1 : 0;
  if (s.size() > digits && std::isdigit(static_cast<unsigned char>(s[digits]))) {
    try {
      size_t used = 0;
      long long v = std::stoll(s, &used);
      if (used == s.size()) return v;
    } catch (...) {
    }
  }
  DDPM_FAIL("'" << s << "' is not a 64-bit integer");
}

uint64_t parse_uint(const std::string& s) {
  if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) {
    try {
      size_t used = 0;
      unsigned long long v = std::stoull(s, &used);
      if (used == s.size()) return v;
    } catch (...) {
    }
  }
  DDPM_FAIL("'" << s << "' is not an unsigned 64-bit integer");
}

double parse_double(const std::string& s) {
  if (!s.empty() && !std::isspace(static_cast<unsigned char>(s[0]))) {
    try {
      size_t used = 0;
      double v = std::stod(s, &used);
      if (used == s.size() && std::isfinite(v)) return v;
    } catch (...) {
    }
  }
  DDPM_FAIL("'" << s << "' is not a finite number");
}

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& source) {
  const std::string& s = meta_get(m, key, source);
  try {
    return parse_int(s);
  } catch (const Error&) {
    DDPM_FAIL(source << ": metadata '" << key << "' = '" << s
                     << "' is not a 64-bit integer; the file is corrupt or not a ddpm checkpoint");
  }
}

std::string lr_history_text(const std::vector<std::pair<int64_t, double>>& h);  // below

const char* timesteps_name(TimestepSampling s) { return s == TimestepSampling::importance ? "importance" : "uniform"; }

// Each field type's metadata text and its strict parse (the inverse; throws a plain
// message, the caller adds the source and key).
std::string to_text(const std::string& v) { return v; }
std::string to_text(int64_t v) { return std::to_string(v); }
std::string to_text(uint64_t v) { return std::to_string(v); }
std::string to_text(double v) { return format_double(v); }
std::string to_text(bool v) { return v ? "1" : "0"; }
std::string to_text(LossType v) { return loss_name(v); }
std::string to_text(VarianceType v) { return variance_name(v); }
std::string to_text(PredictionTarget v) { return target_name(v); }
std::string to_text(TimestepSampling v) { return timesteps_name(v); }

void from_text(const std::string& s, std::string& v) { v = s; }
void from_text(const std::string& s, int64_t& v) { v = parse_int(s); }
void from_text(const std::string& s, uint64_t& v) { v = parse_uint(s); }
void from_text(const std::string& s, double& v) { v = parse_double(s); }
void from_text(const std::string& s, bool& v) {
  DDPM_CHECK(s == "0" || s == "1", "'" << s << "' is not 0 or 1");
  v = s == "1";
}
void from_text(const std::string& s, LossType& v) { v = parse_loss(s); }
void from_text(const std::string& s, VarianceType& v) { v = parse_variance(s); }
void from_text(const std::string& s, PredictionTarget& v) { v = parse_target(s); }
void from_text(const std::string& s, TimestepSampling& v) {
  if (s == "uniform") v = TimestepSampling::uniform;
  else if (s == "importance") v = TimestepSampling::importance;
  else DDPM_FAIL("unknown timestep sampling '" << s << "': use uniform (Algorithm 1) or importance");
}

// A flag's staged value (StagedFlag) into the field.
void from_flag(const std::string& flag, int64_t staged, int64_t& v) { v = staged; (void)flag; }
void from_flag(const std::string& flag, int64_t staged, uint64_t& v) {
  DDPM_CHECK(staged >= 0, flag << " " << staged << " must be non-negative");
  v = static_cast<uint64_t>(staged);
}
void from_flag(const std::string&, double staged, double& v) { v = staged; }
void from_flag(const std::string&, bool staged, bool& v) { v = staged; }
template <class T>
void from_flag(const std::string& flag, const std::string& staged, T& v) {
  try {
    from_text(staged, v);
  } catch (const Error& e) {
    DDPM_FAIL(flag << ": " << e.what());
  }
}
template <class T>
typename StagedFlag<T>::type to_staged(const T& v) {
  if constexpr (std::is_same<typename StagedFlag<T>::type, std::string>::value) return to_text(v);
  else return static_cast<typename StagedFlag<T>::type>(v);
}

// A numeric field within its bounds; other types have none.
template <class T>
void check_bounds(const char* flag, const T& v, const FieldBounds& b) {
  if constexpr (std::is_arithmetic<T>::value && !std::is_same<T, bool>::value) {
    const double x = static_cast<double>(v);
    const bool ok = std::isfinite(x) && (b.lo_open ? x > b.lo : x >= b.lo) && (b.hi_open ? x < b.hi : x <= b.hi);
    if (ok) return;
    std::ostringstream range;
    range << (b.lo_open ? "(" : "[") << b.lo << ", ";
    if (b.hi >= kUnbounded) range << "inf)";
    else range << b.hi << (b.hi_open ? ")" : "]");
    DDPM_FAIL("train: " << flag << " " << to_text(v) << " not in " << range.str());
  } else {
    (void)flag, (void)v, (void)b;
  }
}

}  // namespace

std::map<std::string, std::string> TrainConfig::to_metadata() const {
  std::map<std::string, std::string> m;
  const TrainConfig defaults;
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  if (rule == MetaRule::always || name != defaults.name) m["train." #name] = to_text(name);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
  return m;
}

TrainConfig TrainConfig::from_metadata(const std::map<std::string, std::string>& m, const std::string& source) {
  TrainConfig c;
  std::set<std::string> known;
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help)                                          \
  known.insert("train." #name);                                                                                  \
  if (rule == MetaRule::always || m.count("train." #name)) {                                                     \
    const std::string& text = meta_get(m, "train." #name, source);                                               \
    try {                                                                                                        \
      from_text(text, c.name);                                                                                   \
    } catch (const Error& e) {                                                                                   \
      DDPM_FAIL(source << ": metadata 'train." #name "' = '" << text << "': " << e.what()                        \
                       << "; the file is corrupt or not a ddpm checkpoint");                                     \
    }                                                                                                            \
  }
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
  for (const auto& kv : m)
    DDPM_CHECK(kv.first.compare(0, 6, "train.") != 0 || known.count(kv.first),
               source << ": metadata has '" << kv.first << "' = '" << kv.second
                      << "', which this build does not know (written by a newer ddpm?)");
  try {
    c.validate();
  } catch (const Error& e) {
    DDPM_FAIL(source << ": the training config in its metadata is invalid: " << e.what()
                     << "; the file is corrupt or was not written by ddpm");
  }
  return c;
}

void TrainConfig::validate() const {
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) check_bounds(flag, name, bounds);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
  // Names the bounds cannot express, and the combinations.
  const auto& names = schedule_names();
  DDPM_CHECK(std::find(names.begin(), names.end(), schedule) != names.end(), "train: --schedule '" << schedule << "': use linear, cosine, sigmoid or quadratic");
  DDPM_CHECK(loss == LossType::simple || (predict == PredictionTarget::eps && !learned_variance),
             "train: --loss weighted is an eps-MSE; with --predict " << target_name(predict)
                 << (learned_variance ? " and --learned-variance (L_hybrid)" : "") << " use --loss simple");
}

TrainConfigFlags::TrainConfigFlags(Flags& flags, const TrainConfig& defaults) : flags_(flags) {
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  name = to_staged(defaults.name);                                      \
  flags.add(flag, &name, help);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
}

void TrainConfigFlags::apply(TrainConfig& config) const {
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  if (flags_.given(flag)) from_flag(flag, name, config.name);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
}

std::vector<std::string> TrainConfigFlags::given() const {
  std::vector<std::string> names;
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) \
  if (flags_.given(flag)) names.push_back(flag);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
  return names;
}

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
  if (!lr_history_.empty()) meta["state.lr_history"] = lr_history_text(lr_history_);
  save_safetensors(path, tensors, meta);
}

namespace {

std::string lr_history_text(const std::vector<std::pair<int64_t, double>>& h) {
  std::string s;
  for (size_t i = 0; i < h.size(); i++) s += (i ? "," : "") + std::to_string(h[i].first) + ":" + format_double(h[i].second);
  return s;
}

// "step:lr,step:lr,...": steps from 0, increasing, at most `step`; the last lr is train.lr.
std::vector<std::pair<int64_t, double>> parse_lr_history(const std::string& text, int64_t step, double lr,
                                                         const std::string& source) {
  std::vector<std::pair<int64_t, double>> h;
  std::string problem;
  try {
    size_t begin = 0;
    while (begin <= text.size() && problem.empty()) {
      size_t end = text.find(',', begin);
      if (end == std::string::npos) end = text.size();
      const std::string entry = text.substr(begin, end - begin);
      const size_t colon = entry.find(':');
      DDPM_CHECK(colon != std::string::npos, "entry '" << entry << "' is not step:lr");
      const int64_t k = parse_int(entry.substr(0, colon));
      const double v = parse_double(entry.substr(colon + 1));
      if (h.empty() ? k != 0 : k <= h.back().first) problem = "its steps do not start at 0 and increase";
      else if (k > step) problem = "it has a change at step " + std::to_string(k) + ", after the checkpoint's step";
      else if (!(v > 0)) problem = "it has a learning rate that is not positive";
      h.emplace_back(k, v);
      begin = end + 1;
    }
  } catch (const Error& e) {
    problem = e.what();
  }
  if (problem.empty() && h.back().second != lr) problem = "its last learning rate is not train.lr";
  DDPM_CHECK(problem.empty(), source << ": metadata 'state.lr_history' = '" << text << "' is invalid (" << problem
                                     << "); the file is corrupt: resume from an older checkpoint");
  return h;
}

// Each key of `ours` equal in `theirs` (both directions: a key only one side has differs).
void check_same(const std::map<std::string, std::string>& theirs, const std::map<std::string, std::string>& ours,
                const std::string& path) {
  for (const auto& kv : ours) {
    auto it = theirs.find(kv.first);
    DDPM_CHECK(it != theirs.end(), path << ": the checkpoint has no " << kv.first << ", this run has " << kv.second
                                        << " (resume with the checkpoint's own settings)");
    DDPM_CHECK(it->second == kv.second, path << ": the checkpoint has " << kv.first << " = " << it->second
                                             << ", this run has " << kv.second
                                             << " (resume with the checkpoint's own settings)");
  }
  for (const auto& kv : theirs)
    DDPM_CHECK(ours.count(kv.first), path << ": the checkpoint has " << kv.first << " = " << kv.second
                                          << ", this run does not set it (resume with the checkpoint's own settings)");
}

const char* kStateKeys[] = {"state.step", "state.epoch", "state.position", "state.adam_steps", "state.ema_updates",
                            "state.data_size"};

// The names and shapes of the model's parameters, under each prefix in turn ("", "ema.", ...).
std::vector<std::pair<std::string, Shape>> parameter_shapes(UNet& model, const std::vector<std::string>& prefixes) {
  std::vector<std::pair<std::string, Shape>> shapes;
  for (const std::string& prefix : prefixes)
    for (Parameter* p : model.parameters()) shapes.emplace_back(prefix + p->name, p->var->value.shape());
  return shapes;
}

// The tensor checks of every loader of U-Net weights, in one place (validate_checkpoint for
// training checkpoints, load_model for weights files): `st` holds exactly the tensors
// `expected` names, with their shapes, and no other; every value is finite; every Adam
// second moment (adam.v.*) is >= 0. Errors name st.source, the tensor and the first bad index.
void check_checkpoint_tensors(const SafeTensors& st, const std::vector<std::pair<std::string, Shape>>& expected) {
  check_tensor_shapes(st, expected, "was it trained with another --model?", /*allow_extra=*/false);
  for (const auto& nt : st.tensors) {
    const Tensor& x = nt.second;
    const int64_t bad = first_non_finite(x);
    DDPM_CHECK(bad < 0, st.source << ": tensor " << nt.first << " has a non-finite value (" << x[bad] << " at index "
                                  << bad << "); the file is corrupt: use an older checkpoint");
    if (nt.first.compare(0, 7, "adam.v.") != 0) continue;
    for (int64_t i = 0; i < x.numel(); i++)
      DDPM_CHECK(x[i] >= 0, st.source << ": tensor " << nt.first << " has a negative second moment (" << x[i]
                                      << " at index " << i << "); the file is corrupt: use an older checkpoint");
  }
}

}  // namespace

CheckpointContents validate_checkpoint(const SafeTensors& st, const UNetConfig* expect_model,
                                       const TrainConfig* expect_train) {
  const std::string& path = st.source;
  auto it = st.metadata.find("format");
  DDPM_CHECK(it != st.metadata.end() && it->second == kFormat,
             path << ": not a ddpm training checkpoint (metadata 'format' is not '" << kFormat << "')");
  const std::string& version = meta_get(st.metadata, "format_version", path);
  DDPM_CHECK(version == kFormatVersion,
             path << ": checkpoint format version " << version << ", this build reads " << kFormatVersion);
  // The configs, each read and validated.
  CheckpointContents c{UNetConfig::from_metadata(st.metadata, path), TrainConfig::from_metadata(st.metadata, path), {}};
  // And this run's, when given: the first key that differs is named.
  if (expect_model) {
    std::map<std::string, std::string> theirs;
    for (const auto& kv : st.metadata)
      if (kv.first.compare(0, 7, "config.") == 0) theirs.insert(kv);
    check_same(theirs, expect_model->to_metadata(), path);
  }
  if (expect_train) {
    std::map<std::string, std::string> theirs;
    for (const auto& kv : st.metadata)
      if (kv.first.compare(0, 6, "train.") == 0) theirs.insert(kv);
    check_same(theirs, expect_train->to_metadata(), path);
  }
  DDPM_CHECK(c.model.num_classes == (c.train.conditional ? 10 : 0) && c.model.learned_variance == c.train.learned_variance,
             path << ": config.num_classes = " << c.model.num_classes << " and config.learned_variance = "
                  << c.model.learned_variance << " do not fit train.conditional = " << c.train.conditional
                  << " and train.learned_variance = " << c.train.learned_variance << "; the file is corrupt");
  // The counters. Adam and the EMA update at most once per step.
  TrainState& s = c.state;
  std::set<std::string> known(std::begin(kStateKeys), std::end(kStateKeys));
  known.insert("state.lr_history");
  for (const auto& kv : st.metadata)
    DDPM_CHECK(kv.first.compare(0, 6, "state.") != 0 || known.count(kv.first),
               path << ": metadata has '" << kv.first << "', which this build does not know (written by a newer ddpm?)");
  s.step = meta_int(st.metadata, "state.step", path);
  s.epoch = meta_int(st.metadata, "state.epoch", path);
  s.position = meta_int(st.metadata, "state.position", path);
  s.adam_steps = meta_int(st.metadata, "state.adam_steps", path);
  s.ema_updates = meta_int(st.metadata, "state.ema_updates", path);
  s.data_size = meta_int(st.metadata, "state.data_size", path);
  const int64_t max_step = int64_t(1) << 53;  // far beyond any run, far from overflow
  DDPM_CHECK(s.step >= 0 && s.step <= max_step && s.epoch >= 0 && s.epoch <= max_step && s.data_size >= 1 &&
                 s.position >= 0 && s.position < s.data_size && s.adam_steps >= 0 && s.adam_steps <= s.step &&
                 s.ema_updates >= 0 && s.ema_updates <= s.step,
             path << ": inconsistent training state (step " << s.step << ", epoch " << s.epoch << ", position "
                  << s.position << ", adam_steps " << s.adam_steps << ", ema_updates " << s.ema_updates << ", data_size "
                  << s.data_size << "); the file is corrupt: resume from an older checkpoint");
  auto h = st.metadata.find("state.lr_history");
  if (h != st.metadata.end()) s.lr_history = parse_lr_history(h->second, s.step, c.train.lr, path);
  // The tensors: exactly the ones the model (and the importance sampler) needs, all finite.
  std::vector<std::pair<std::string, Shape>> expected;
  {
    UNet model(c.model);
    expected = parameter_shapes(model, {"", "ema.", "adam.m.", "adam.v."});
  }
  if (c.train.timesteps == TimestepSampling::importance) {
    expected.emplace_back("timesteps.history", Shape{c.train.T, TimestepSampler::kHistory});
    expected.emplace_back("timesteps.count", Shape{c.train.T});
  }
  check_checkpoint_tensors(st, expected);
  if (c.train.timesteps == TimestepSampling::importance) {
    const Tensor& count = st.at("timesteps.count");
    for (int64_t k = 0; k < count.numel(); k++)
      DDPM_CHECK(count[k] >= 0 && count[k] <= TimestepSampler::kHistory && count[k] == std::floor(count[k]),
                 path << ": tensor timesteps.count[" << k << "] = " << count[k] << " is not an integer in 0.."
                      << TimestepSampler::kHistory << "; the file is corrupt");
  }
  return c;
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
  return r;
}

std::unique_ptr<UNet> Trainer::ema_model() const {
  auto copy = std::make_unique<UNet>(model_->config());
  ParamList ps = copy->parameters();
  for (size_t i = 0; i < ps.size(); i++) ps[i]->var->value.copy_(ema_->shadow()[i]);
  return copy;
}

std::unique_ptr<UNet> load_model(const std::string& path, bool use_ema, std::map<std::string, std::string>* metadata,
                                 bool* loaded_ema) {
  const SafeTensors st = load_safetensors(path);
  // A training checkpoint ("format" in its metadata) gets every check the trainer makes. A
  // weights file (config.* metadata and the weights, the EMA weights or both, as
  // tools/torch_reference.py exports) gets the same tensor checks for the groups it holds.
  const bool training_checkpoint = st.metadata.count("format") > 0;
  const UNetConfig config =
      training_checkpoint ? validate_checkpoint(st).model : UNetConfig::from_metadata(st.metadata, path);
  auto model = std::make_unique<UNet>(config);
  const std::string first = model->parameters()[0]->name;
  if (!training_checkpoint) {
    std::vector<std::string> groups;
    for (const char* prefix : {"", "ema."})
      if (st.find(prefix + first)) groups.push_back(prefix);
    if (groups.empty()) groups.push_back("");  // the error lists the weights it lacks
    check_checkpoint_tensors(st, parameter_shapes(*model, groups));
  }
  const bool has_ema = use_ema && st.find("ema." + first) != nullptr;
  const std::string prefix = has_ema ? "ema." : "";
  for (Parameter* p : model->parameters()) p->var->value.copy_(st.at(prefix + p->name));
  if (metadata) *metadata = st.metadata;
  if (loaded_ema) *loaded_ema = has_ema;
  return model;
}

}  // namespace ddpm

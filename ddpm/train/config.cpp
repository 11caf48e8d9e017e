#include "ddpm/train/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/diffusion/schedule.h"

namespace ddpm {

namespace {

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

// The fields that were once written only when not at their default, with that old default:
// a checkpoint that omits one was written then, at that value (MetaRule in config.h).
const std::map<std::string, std::string>& legacy_metadata() {
  static const std::map<std::string, std::string> m = {
      {"train.ema_warmup", "10"},           // before --ema-warmup existed
      {"train.steps", "2000"},              // the default run before the study (docs/results.md)
      {"train.lr_schedule", "constant"},
      {"train.lr_floor", "0"},
  };
  return m;
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
std::string to_text(LrSchedule v) { return lr_schedule_name(v); }

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
void from_text(const std::string& s, LrSchedule& v) { v = parse_lr_schedule(s); }
void from_text(const std::string& s, TimestepSampling& v) {
  if (s == "uniform") v = TimestepSampling::uniform;
  else if (s == "importance") v = TimestepSampling::importance;
  else DDPM_FAIL("unknown timestep sampling '" << s << "': use uniform (Algorithm 1) or importance");
}

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
    const std::string& text = m.count("train." #name) || !legacy_metadata().count("train." #name)              \
                                  ? meta_get(m, "train." #name, source)                                          \
                                  : legacy_metadata().at("train." #name);                                        \
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

UNetConfig TrainConfig::model_config() const {
  UNetConfig mc = unet_config(model);
  if (conditional) mc.num_classes = classes > 0 ? classes : 10;
  if (learned_variance) mc.learned_variance = true;
  // each the named model's own unless given
  if (ch > 0) mc.ch = ch;
  if (res_blocks > 0) mc.num_res_blocks = res_blocks;
  if (dropout >= 0) mc.dropout = static_cast<float>(dropout);
  if (channels > 0) mc.in_ch = channels;
  if (image_size > 0) {
    const int64_t factor = int64_t(1) << (mc.ch_mult.size() - 1);
    DDPM_CHECK(image_size % factor == 0, "train: --image-size " << image_size << " is not a multiple of " << factor
                                             << ": model '" << model << "' halves the image " << mc.ch_mult.size() - 1
                                             << " times (try " << std::max(kMinImageSize, image_size / factor * factor)
                                             << ")");
    mc = resized_config(mc, image_size);
  }
  return mc;
}

TrainConfig preset_config(const std::string& name) {
  TrainConfig c;
  if (name == "default") return c;
  DDPM_CHECK(name == "paper", "unknown --preset '" << name << "': use default or paper");
  // Ho et al. 2020, Appendix B (CIFAR-10): Adam 2e-4, batch 128, EMA 0.9999, dropout 0.1,
  // 5000 warm-up steps, gradient clipping at 1, no decay
  c.lr = 2e-4;
  c.batch = 128;
  c.ema = 0.9999;
  c.dropout = 0.1;
  c.warmup = 5000;
  c.grad_clip = 1.0;
  c.lr_schedule = LrSchedule::constant;
  return c;
}

void TrainConfig::validate() const {
#define DDPM_FIELD(T_, name, default_value, flag, bounds, rule, help) check_bounds(flag, name, bounds);
  DDPM_TRAIN_CONFIG_FIELDS(DDPM_FIELD)
#undef DDPM_FIELD
  // Names the bounds cannot express, and the combinations.
  const auto& names = schedule_names();
  DDPM_CHECK(std::find(names.begin(), names.end(), schedule) != names.end(), "train: --schedule '" << schedule << "': use linear, cosine, sigmoid or quadratic");
  DDPM_CHECK(micro_batch == 0 || (micro_batch <= batch && batch % micro_batch == 0),
             "train: --batch " << batch << " is not a whole number of --micro-batch " << micro_batch
                               << " micro-batches; choose a divisor of the batch (or 0: the whole batch)");
  DDPM_CHECK(image_size == 0 || image_size >= kMinImageSize,
             "train: --image-size " << image_size << " not in " << kMinImageSize << ".." << kMaxImageSize
                                    << " (0: the dataset's own)");
  DDPM_CHECK(channels != 2, "train: --channels 2: use 1 (gray) or 3 (RGB)");
  DDPM_CHECK(classes != 1, "train: --classes 1: a conditional model needs 2..10 classes");
  model_config().validate();  // --model known, --image-size a multiple of 2^(levels-1), the sizes in bounds
  DDPM_CHECK(loss == LossType::simple || (predict == PredictionTarget::eps && !learned_variance),
             "train: --loss weighted is an eps-MSE; with --predict " << target_name(predict)
                 << (learned_variance ? " and --learned-variance (L_hybrid)" : "") << " use --loss simple");
}

}  // namespace ddpm

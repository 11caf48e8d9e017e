#include "ddpm/train/checkpoint.h"

#include <cmath>
#include <set>

#include "ddpm/core/check.h"
#include "ddpm/extensions/importance_sampling.h"

namespace ddpm {

namespace {

constexpr const char* kFormat = "ddpm.checkpoint";
constexpr const char* kFormatVersion = "1";

// The metadata texts of the config's field types (config.h), as values.
int64_t parse_int(const std::string& s) {
  int64_t v = 0;
  from_text(s, v);
  return v;
}
double parse_double(const std::string& s) {
  double v = 0;
  from_text(s, v);
  return v;
}

const std::string& meta_get(const std::map<std::string, std::string>& m, const std::string& key,
                            const std::string& source) {
  auto it = m.find(key);
  DDPM_CHECK(it != m.end(), source << ": metadata has no '" << key << "' (is this a ddpm checkpoint?)");
  return it->second;
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

std::string lr_history_text(const std::vector<std::pair<int64_t, double>>& h) {
  std::string s;
  for (size_t i = 0; i < h.size(); i++) s += (i ? "," : "") + std::to_string(h[i].first) + ":" + to_text(h[i].second);
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

// The format tag and its version, before anything else is read.
void check_format(const SafeTensors& st) {
  const std::string& path = st.source;
  auto it = st.metadata.find("format");
  DDPM_CHECK(it != st.metadata.end() && it->second == kFormat,
             path << ": not a ddpm training checkpoint (metadata 'format' is not '" << kFormat << "')");
  const std::string& version = meta_get(st.metadata, "format_version", path);
  DDPM_CHECK(version == kFormatVersion,
             path << ": checkpoint format version " << version << ", this build reads " << kFormatVersion);
}

// The metadata entries whose key starts with `prefix` ("config.", "train.").
std::map<std::string, std::string> metadata_with_prefix(const std::map<std::string, std::string>& m,
                                                        const std::string& prefix) {
  std::map<std::string, std::string> out;
  for (const auto& kv : m)
    if (kv.first.compare(0, prefix.size(), prefix) == 0) out.insert(kv);
  return out;
}

// The model config and the training config must agree where they overlap: train.ch,
// train.res_blocks, train.dropout, train.image_size and train.channels (when set) size the
// model, and train.conditional and train.learned_variance decide its class embedding and
// its output channels.
void check_configs_agree(const UNetConfig& model, const TrainConfig& train, const std::string& path) {
  DDPM_CHECK((train.ch == 0 || model.ch == train.ch) &&
                 (train.res_blocks == 0 || model.num_res_blocks == train.res_blocks) &&
                 (train.dropout < 0 || model.dropout == static_cast<float>(train.dropout)),
             path << ": config.ch = " << model.ch << ", config.num_res_blocks = " << model.num_res_blocks
                  << " and config.dropout = " << model.dropout << " do not fit train.ch = " << train.ch
                  << ", train.res_blocks = " << train.res_blocks << " and train.dropout = " << train.dropout
                  << "; the file is corrupt");
  DDPM_CHECK((train.image_size == 0 || model.image_size == train.image_size) &&
                 (train.channels == 0 || model.in_ch == train.channels),
             path << ": config.image_size = " << model.image_size << " and config.in_ch = " << model.in_ch
                  << " do not fit train.image_size = " << train.image_size << " and train.channels = "
                  << train.channels << "; the file is corrupt");
  DDPM_CHECK(model.num_classes == train.model_config().num_classes && model.learned_variance == train.learned_variance,
             path << ": config.num_classes = " << model.num_classes << " and config.learned_variance = "
                  << model.learned_variance << " do not fit train.conditional = " << train.conditional
                  << ", train.classes = " << train.classes << " and train.learned_variance = "
                  << train.learned_variance << "; the file is corrupt");
}

// The counters (state.*), each present and consistent: Adam and the EMA update at most once
// per step, the data cursor lies inside the data. `lr` is train.lr, the history's last rate.
TrainState read_state(const std::map<std::string, std::string>& meta, double lr, const std::string& path) {
  std::set<std::string> known(std::begin(kStateKeys), std::end(kStateKeys));
  known.insert("state.lr_history");
  for (const auto& kv : meta)
    DDPM_CHECK(kv.first.compare(0, 6, "state.") != 0 || known.count(kv.first),
               path << ": metadata has '" << kv.first << "', which this build does not know (written by a newer ddpm?)");
  TrainState s;
  s.step = meta_int(meta, "state.step", path);
  s.epoch = meta_int(meta, "state.epoch", path);
  s.position = meta_int(meta, "state.position", path);
  s.adam_steps = meta_int(meta, "state.adam_steps", path);
  s.ema_updates = meta_int(meta, "state.ema_updates", path);
  s.data_size = meta_int(meta, "state.data_size", path);
  const int64_t max_step = kMaxSteps;
  DDPM_CHECK(s.step >= 0 && s.step <= max_step && s.epoch >= 0 && s.epoch <= max_step && s.data_size >= 1 &&
                 s.position >= 0 && s.position < s.data_size && s.adam_steps >= 0 && s.adam_steps <= s.step &&
                 s.ema_updates >= 0 && s.ema_updates <= s.step,
             path << ": inconsistent training state (step " << s.step << ", epoch " << s.epoch << ", position "
                  << s.position << ", adam_steps " << s.adam_steps << ", ema_updates " << s.ema_updates << ", data_size "
                  << s.data_size << "); the file is corrupt: resume from an older checkpoint");
  auto h = meta.find("state.lr_history");
  if (h != meta.end()) s.lr_history = parse_lr_history(h->second, s.step, lr, path);
  return s;
}

// The tensors a checkpoint of these configs holds: the weights, the EMA weights and Adam's
// two moments of every parameter, and the importance sampler's history when it is on.
std::vector<std::pair<std::string, Shape>> checkpoint_tensor_shapes(const UNetConfig& model_config,
                                                                    const TrainConfig& train) {
  std::vector<std::pair<std::string, Shape>> expected;
  {
    UNet model(model_config);
    expected = parameter_shapes(model, {"", "ema.", "adam.m.", "adam.v."});
  }
  if (train.timesteps == TimestepSampling::importance) {
    expected.emplace_back("timesteps.history", Shape{train.T, TimestepSampler::kHistory});
    expected.emplace_back("timesteps.count", Shape{train.T});
  }
  return expected;
}

// The importance sampler's counts are whole numbers of at most its history's length.
void check_timestep_counts(const SafeTensors& st) {
  const Tensor& count = st.at("timesteps.count");
  for (int64_t k = 0; k < count.numel(); k++)
    DDPM_CHECK(count[k] >= 0 && count[k] <= TimestepSampler::kHistory && count[k] == std::floor(count[k]),
               st.source << ": tensor timesteps.count[" << k << "] = " << count[k] << " is not an integer in 0.."
                         << TimestepSampler::kHistory << "; the file is corrupt");
}

}  // namespace

std::map<std::string, std::string> checkpoint_metadata(const UNetConfig& model, const TrainConfig& train,
                                                       const TrainState& state) {
  std::map<std::string, std::string> meta = model.to_metadata();
  for (auto& kv : train.to_metadata()) meta.insert(kv);
  meta["format"] = kFormat;
  meta["format_version"] = kFormatVersion;
  meta["state.step"] = std::to_string(state.step);
  meta["state.epoch"] = std::to_string(state.epoch);
  meta["state.position"] = std::to_string(state.position);
  meta["state.adam_steps"] = std::to_string(state.adam_steps);
  meta["state.ema_updates"] = std::to_string(state.ema_updates);
  meta["state.data_size"] = std::to_string(state.data_size);
  if (!state.lr_history.empty()) meta["state.lr_history"] = lr_history_text(state.lr_history);
  return meta;
}

CheckpointContents validate_checkpoint(const SafeTensors& st, const UNetConfig* expect_model,
                                       const TrainConfig* expect_train) {
  const std::string& path = st.source;
  check_format(st);
  // The configs, each read and validated.
  CheckpointContents c{UNetConfig::from_metadata(st.metadata, path), TrainConfig::from_metadata(st.metadata, path), {}};
  // And this run's, when given: the first key that differs is named.
  if (expect_model) check_same(metadata_with_prefix(st.metadata, "config."), expect_model->to_metadata(), path);
  if (expect_train) check_same(metadata_with_prefix(st.metadata, "train."), expect_train->to_metadata(), path);
  check_configs_agree(c.model, c.train, path);
  c.state = read_state(st.metadata, c.train.lr, path);
  // The tensors: exactly the ones the model (and the importance sampler) needs, all finite.
  check_checkpoint_tensors(st, checkpoint_tensor_shapes(c.model, c.train));
  if (c.train.timesteps == TimestepSampling::importance) check_timestep_counts(st);
  return c;
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

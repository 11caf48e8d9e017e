#include "ddpm/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/core/hash.h"
#include "ddpm/dist/tree_reduce.h"
#include "ddpm/data/augment.h"

namespace ddpm {

namespace {

enum TrainRngPurpose : uint64_t {
  rng_shuffle = 0x7e01,     // the data permutation of epoch e: Generator(seed, make_stream(rng_shuffle, e))
  rng_dropout = 0x7e02,     // dropout masks of step k: make_stream(rng_dropout, k), then the block id
  rng_label_drop = 0x7e03,  // classifier-free guidance label drop of step k, index i
  rng_hflip = 0x7e04,       // --hflip: the flips of step k's batch, image i (augment.h)
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
  const UNetConfig mc = model_config ? *model_config : config_.model_config();
  // Classifier-free guidance needs labels, and the model has --classes classes and a null one.
  DDPM_CHECK(!config_.conditional || (data_.num_classes >= 2 && data_.num_classes <= mc.num_classes),
             "train: --conditional needs 2.." << mc.num_classes << " classes, the dataset has " << data_.num_classes
                 << (data_.num_classes < 2 ? " (a folder without class sub-folders): put each class's images in "
                                             "DIR/<class>/, or drop --conditional"
                     : data_.num_classes <= 10 ? ": give --classes " + std::to_string(data_.num_classes) + " or 0"
                                               : std::string(": use at most 10 class sub-folders, or drop --conditional")));
  if (config_.timesteps == TimestepSampling::importance) timestep_sampler_ = std::make_unique<TimestepSampler>(config_.T);
  const Shape& s = data_.images.shape();
  DDPM_CHECK(s.size() == 4 && s[1] == mc.in_ch && s[2] == mc.image_size && s[3] == mc.image_size,
             "train: images " << data_.images.shape_str() << " do not fit model '" << mc.name << "' ([N, " << mc.in_ch
                              << ", " << mc.image_size << ", " << mc.image_size << "])");
  model_ = std::make_unique<UNet>(mc, config_.seed);
  params_ = model_->parameters();
  adam_ = std::make_unique<Adam>(params_, AdamConfig{config_.lr});
  ema_ = std::make_unique<EMA>(params_, config_.ema, config_.ema_warmup);
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

namespace {

// The report of a non-finite loss or gradient: the step (and micro-batch), the timesteps of
// the samples that went bad, and where on the tape it started.
std::string nonfinite_report(int64_t step, const std::string& where, const std::string& what, const ObjectiveStep& ts,
                             const Tape& tape, const ParamList& params) {
  std::ostringstream os;
  os << "step " << step << where << ": " << what << ".";
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
    for (Parameter* p : params) {
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
  return os.str();
}

// What a rank tells the others at the end of its micro-batches, as doubles: a header
// {status, length of the report}, then per micro-batch {loss, t[M], per-sample loss[M]}.
enum StepStatus { step_ok = 0, step_stopped = 1, step_failed = 2 };
constexpr int64_t kHeader = 2;

// Unwinds tree_sum when a micro-batch fails or a stop is asked.
struct Abandon {};

// Every parameter's gradient, flattened in parameter order; `finite` says whether all are.
std::vector<float> flat_grad(const ParamList& params, bool* finite) {
  std::vector<float> grad;
  *finite = true;
  for (Parameter* p : params) {
    const Tensor& g = p->var->grad;
    for (int64_t i = 0; i < g.numel(); i++) *finite = *finite && std::isfinite(g[i]);
    grad.insert(grad.end(), g.data(), g.data() + g.numel());
  }
  return grad;
}

}  // namespace

struct Trainer::StepBatch {
  Tensor x0;                    // the whole batch [B, C, H, W], the same on every rank
  std::vector<int64_t> labels;  // [B], after the label drop
  uint64_t k = 0;               // the step, 0-based (keys t, eps, dropout)
  int64_t K = 1, M = 0;         // micro-batches and their size
  Objective objective;

  // " (micro-batch m of K, samples a..b of the batch)" for a report; "" for the whole batch.
  std::string name(int64_t m) const {
    if (K == 1) return "";
    return " (micro-batch " + std::to_string(m) + " of " + std::to_string(K) + ", samples " + std::to_string(m * M) +
           ".." + std::to_string(m * M + M - 1) + " of the batch)";
  }
};

struct Trainer::StepShare {
  int64_t first = 0;           // this rank's first micro-batch
  std::vector<double> record;  // header + one record per micro-batch (see StepStatus)
  std::string report;          // the non-finite report, when failed

  // Micro-batch m's record: its loss, its samples' t and per-sample losses (M of each).
  void keep(int64_t m, int64_t M, double loss, const ObjectiveStep& ts) {
    double* rec = record.data() + kHeader + (m - first) * (1 + 2 * M);
    rec[0] = loss;
    for (int64_t i = 0; i < M; i++) rec[1 + i] = static_cast<double>(ts.t[i]);
    for (int64_t i = 0; i < M && !ts.per_sample_loss.empty(); i++) rec[1 + M + i] = ts.per_sample_loss[i];
  }
  // Ends this rank's share of the step: a stop, or a failure with its report.
  [[noreturn]] void abandon(StepStatus status, std::string why = "") {
    record[0] = status;
    report = std::move(why);
    record[1] = static_cast<double>(report.size());
    throw Abandon{};
  }
};

std::vector<float> Trainer::micro_batch_grad(const StepBatch& b, int64_t m, StepShare& share) {
  if (stop_ && stop_->load()) share.abandon(step_stopped);
  const int64_t first = m * b.M;  // the global index of its first sample
  const Tensor x0 = b.K == 1 ? b.x0 : rows(b.x0, first, b.M);  // [M, C, H, W]
  const std::vector<int64_t> labels(b.labels.begin() + first, b.labels.begin() + first + b.M);
  const ForwardContext ctx{true, RngKey{config_.seed, make_stream(rng_dropout, b.k)}, first};
  TapeEpsFn network = [&](Tape& tape, const Var& x_t, const std::vector<int64_t>& t) {
    return model_->forward(tape, x_t, t, ctx, config_.conditional ? &labels : nullptr);
  };
  zero_grad(params_);
  Tape tape;
  // Forward, Algorithm 1, lines 3-5: t, eps and the loss (Algorithm 1 itself unless an option
  // is on), keyed by the samples' indices in the whole batch.
  ObjectiveStep ts = objective_step(tape, schedule_, network, x0, config_.seed, b.k, first, b.objective);
  const double loss = ts.loss->value[0];
  auto fail = [&](const std::string& what) {
    share.abandon(step_failed, nonfinite_report(step_ + 1, b.name(m), what, ts, tape, params_));
  };
  if (!std::isfinite(loss)) fail("the loss is " + std::to_string(loss));
  // Backward: the micro-batch's loss is its mean; seeded with 1/K, the K of them sum to the
  // batch mean's gradient (1/K = 1 exactly for the whole batch).
  tape.backward(ts.loss, Tensor::full({1}, 1.0f / static_cast<float>(b.K)));
  bool finite = false;
  std::vector<float> grad = flat_grad(params_, &finite);
  if (!finite) fail("a gradient is not finite");
  share.keep(m, b.M, loss, ts);
  return grad;
}

double Trainer::step() {
  const int64_t saved_epoch = epoch_, saved_position = position_;
  auto rewind = [&] { epoch_ = saved_epoch, position_ = saved_position; };  // an abandoned step leaves no trace
  try {
    // Algorithm 1, line 2: x_0 ~ q(x_0), the whole batch, on every rank.
    const StepBatch b = draw_batch();
    // Lines 3-5 for this rank's micro-batches, their gradients summed over the tree nodes it owns.
    StepShare share;
    std::vector<std::vector<float>> sums = owned_sums(b, share);
    // Every rank's status and losses to every rank (raising any rank's failure or stop), then
    // the sum over the whole tree: one process's gradient of the batch's loss.
    const auto t_comm = std::chrono::steady_clock::now();
    const std::vector<double> records = exchange_records(share);
    const std::vector<float> grad = tree_allreduce(*comm_, b.K, std::move(sums), model_->num_parameters());
    if (comm_->size() > 1) comm_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_comm).count();
    // Line 5's gradient step: clipping, Adam, then the EMA of the weights.
    apply_gradient(grad);
    const double loss = batch_loss(b, records);
    step_++;
    return loss;
  } catch (const NonFiniteError&) {
    rewind();
    throw;
  } catch (const StepInterrupted&) {
    rewind();
    throw;
  }
}

// The whole batch as one process draws it: the data, the label drop, the objective, K and M.
Trainer::StepBatch Trainer::draw_batch() {
  StepBatch b;
  next_batch(b.x0, b.labels);  // [B, C, H, W], [B]
  b.k = static_cast<uint64_t>(step_);
  if (config_.hflip) random_hflip(b.x0, RngKey{config_.seed, make_stream(rng_hflip, b.k)});  // Ho et al., Appendix B
  if (step_ + 1 == nan_step_) b.x0[nan_sample_ * (b.x0.numel() / b.x0.size(0))] = NAN;  // debug: inject_nan
  if (config_.conditional) {
    // Classifier-free guidance (Ho & Salimans 2022): drop the label to null with p_uncond.
    const int64_t null_class = model_->config().num_classes;
    RngKey drop{config_.seed, make_stream(rng_label_drop, b.k)};
    for (size_t i = 0; i < b.labels.size(); i++)
      if (uniform(drop, i) < config_.p_uncond) b.labels[i] = null_class;
  }
  b.objective.loss = config_.loss;
  b.objective.variance = config_.variance;
  b.objective.predict = config_.predict;
  b.objective.learned_variance = config_.learned_variance;
  b.objective.timesteps = timestep_sampler_.get();
  b.K = micro_batches();
  b.M = config_.batch / b.K;
  return b;
}

// This rank's micro-batches [r K / R, (r + 1) K / R), summed over the tree nodes it owns
// (the whole tree on one process). None when one failed or a stop was asked: share.record's
// status says which.
std::vector<std::vector<float>> Trainer::owned_sums(const StepBatch& b, StepShare& share) {
  const int R = comm_->size(), r = comm_->rank();
  const int64_t per_rank = b.K / R;
  share.first = r * per_rank;
  share.record.assign(static_cast<size_t>(kHeader + per_rank * (1 + 2 * b.M)), 0.0);
  std::vector<std::vector<float>> sums;  // one flattened gradient per owned node
  try {
    for (const TreeNode& node : owned_nodes(b.K, R, r))
      sums.push_back(tree_sum(node, [&](int64_t m) { return micro_batch_grad(b, m, share); }));
  } catch (const Abandon&) {
    sums.clear();
  }
  return sums;
}

// Every rank's record, in rank order. A failure on any rank raises its report on every rank
// (the first rank that failed sends it), and a stop on any rank raises StepInterrupted.
std::vector<double> Trainer::exchange_records(const StepShare& share) {
  const int R = comm_->size();
  const size_t n = share.record.size();
  std::vector<double> all(n * static_cast<size_t>(R));
  comm_->allgather(share.record.data(), static_cast<int64_t>(n * sizeof(double)), all.data());
  auto status_of = [&](int rank) { return static_cast<int>(all[static_cast<size_t>(rank) * n]); };
  for (int rank = 0; rank < R; rank++) {
    if (status_of(rank) != step_failed) continue;
    std::string report(static_cast<size_t>(all[static_cast<size_t>(rank) * n + 1]), ' ');
    if (rank == comm_->rank()) report = share.report;
    comm_->broadcast(&report[0], static_cast<int64_t>(report.size()), rank);
    throw NonFiniteError(report);
  }
  for (int rank = 0; rank < R; rank++)
    if (status_of(rank) == step_stopped)
      throw StepInterrupted("step " + std::to_string(step_ + 1) + " was abandoned: a stop was asked");
  return all;
}

// The batch's gradient (flattened in parameter order) into the parameters, then what every
// rank does alike: clipping at --grad-clip, Adam at the scheduled learning rate, the EMA.
void Trainer::apply_gradient(const std::vector<float>& grad) {
  const float* g = grad.data();
  for (Parameter* p : params_) {
    std::copy(g, g + p->var->grad.numel(), p->var->grad.data());
    g += p->var->grad.numel();
  }
  const double max_norm = config_.grad_clip > 0 ? config_.grad_clip : std::numeric_limits<double>::infinity();
  const double grad_norm = clip_grad_norm(params_, max_norm);
  if (!std::isfinite(grad_norm))
    throw NonFiniteError("step " + std::to_string(step_ + 1) + ": the gradient norm is " + std::to_string(grad_norm) +
                         " although every micro-batch's gradient was finite (their sum overflowed). Resume from the "
                         "last checkpoint with a lower --lr, or check the data.");
  adam_->step(scheduled_lr(config_.lr, step_ + 1, config_.warmup, config_.lr_schedule, config_.lr_floor, config_.steps));
  ema_->update(params_);
}

// The batch's loss, the mean of the micro-batches' means; each sample's t and loss, micro-
// batch by micro-batch in order, go to --timesteps importance's E[L_t^2] history.
double Trainer::batch_loss(const StepBatch& b, const std::vector<double>& records) {
  const int64_t per_rank = b.K / comm_->size(), record_size = 1 + 2 * b.M;
  const size_t rank_size = static_cast<size_t>(kHeader + per_rank * record_size);
  double loss = 0;
  std::vector<int64_t> t;
  std::vector<double> per_sample_loss;
  for (int64_t m = 0; m < b.K; m++) {
    const double* rec = records.data() + static_cast<size_t>(m / per_rank) * rank_size + kHeader + (m % per_rank) * record_size;
    loss += rec[0];
    for (int64_t i = 0; i < b.M; i++) t.push_back(static_cast<int64_t>(rec[1 + i]));
    per_sample_loss.insert(per_sample_loss.end(), rec + 1 + b.M, rec + 1 + 2 * b.M);
  }
  if (timestep_sampler_) timestep_sampler_->update(t, per_sample_loss);
  return loss / static_cast<double>(b.K);
}

void Trainer::distribute(Communicator& comm) {
  const int R = comm.size();
  const int64_t B = config_.batch, K = micro_batches();
  if (K % R != 0) {
    std::ostringstream os;
    if (config_.micro_batch == 0)
      os << "--micro-batch 0 runs the whole batch as one piece, which " << R << " ranks cannot share";
    else
      os << "--batch " << B << " in micro-batches of " << config_.micro_batch << " is " << K << " micro-batches, which "
         << R << " ranks cannot share evenly";
    if (B % R == 0)
      os << "; give --micro-batch M with " << B << "/M a multiple of " << R << ", e.g. --micro-batch " << B / R
         << " (one process with the same --micro-batch gives the same bits)";
    else
      os << "; --batch " << B << " is not even divisible by " << R << " ranks: choose a batch that is";
    DDPM_FAIL(os.str());
  }
  comm_ = &comm;
}

void Trainer::inject_nan(int64_t step, int64_t sample) {
  DDPM_CHECK(step >= 1 && sample >= 0 && sample < config_.batch,
             "inject_nan: step " << step << " must be >= 1 and sample " << sample << " in 0.." << config_.batch - 1);
  nan_step_ = step;
  nan_sample_ = sample;
}

NamedTensors Trainer::checkpoint_tensors() const {
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
  return tensors;
}

std::map<std::string, std::string> Trainer::checkpoint_meta() const {
  TrainState state;
  state.step = step_;
  state.epoch = epoch_;
  state.position = position_;
  state.adam_steps = adam_->steps();
  state.ema_updates = ema_->updates();
  state.data_size = data_.size();
  state.lr_history = lr_history_;
  return checkpoint_metadata(model_->config(), config_, state);
}

void Trainer::save_checkpoint(const std::string& path) { save_safetensors(path, checkpoint_tensors(), checkpoint_meta()); }

std::vector<uint8_t> Trainer::checkpoint_bytes() const { return encode_safetensors(checkpoint_tensors(), checkpoint_meta()); }

uint64_t Trainer::state_hash() const {
  Fnv1a fnv;
  fnv.add(&step_, sizeof step_);
  for (const auto& nt : checkpoint_tensors()) {
    fnv.add(nt.first.data(), nt.first.size() + 1);
    fnv.add(nt.second.data(), static_cast<size_t>(nt.second.numel()) * sizeof(float));
  }
  return fnv.h;
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

std::unique_ptr<Trainer> trainer_from_checkpoint(const SafeTensors& st, const Dataset& data) {
  const CheckpointContents c = validate_checkpoint(st);
  auto trainer = std::make_unique<Trainer>(c.train, data, &c.model);
  trainer->load_checkpoint(st);
  return trainer;
}

Resumed resume_trainer(const std::vector<std::string>& candidates, const Dataset& data,
                       const ResumeOverrides& overrides, const std::function<void(const std::string&)>& warn) {
  DDPM_CHECK(!candidates.empty(), "resume: no checkpoint to resume from");
  Resumed r;
  for (size_t i = 0; i < candidates.size() && !r.trainer; i++) {
    const std::string& path = candidates[i];
    try {
      r.trainer = trainer_from_checkpoint(load_safetensors(path), data);
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

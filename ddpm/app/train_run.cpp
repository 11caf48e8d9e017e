#include "ddpm/app/train_run.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "ddpm/app/figures.h"
#include "ddpm/app/progress.h"
#include "ddpm/app/run_folder.h"
#include "ddpm/app/sampling.h"
#include "ddpm/core/check.h"
#include "ddpm/core/hash.h"
#include "ddpm/core/parallel.h"
#include "ddpm/data/dataset.h"
#include "ddpm/io/file.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/io/svg.h"
#include "ddpm/train/checkpoint.h"
#include "ddpm/train/trainer.h"

namespace ddpm {

TrainRunFlags::TrainRunFlags(TrainRun* run)
    : run_(run),
      flags_("train_mnist", "Train a DDPM U-Net on MNIST, Fashion-MNIST, CIFAR-10 or a folder of images with Algorithm 1 (L_simple) of Ho et al. 2020."),
      config_flags_(flags_, run->config) {
  TrainRun& r = *run;
  flags_.add("--preset", &r.preset, "start from a preset before the other flags: default, or paper (Ho et al.'s "
                                    "CIFAR-10 hyperparameters: lr 2e-4, batch 128, EMA 0.9999, dropout 0.1, "
                                    "warm-up 5000, grad clip 1)");
  flags_.add("--epochs", &r.epochs, "if > 0, --steps is this many epochs of the dataset");
  flags_.add("--threads", &r.threads, "worker threads (results do not depend on it)");
  flags_.add("--dataset", &r.dataset,
             "mnist, fashion (Fashion-MNIST from Debian's dataset-fashion-mnist), cifar10 (its binary batches) or "
             "folder (PNG/PGM/PPM images in --data, optionally one sub-folder per class; docs/data.md)");
  flags_.add("--data", &r.data_dir,
             "the dataset's folder: the four IDX files, gzipped or not (empty: data/mnist, or the Debian folder for "
             "fashion); data_batch_*.bin (empty: data/cifar10); the images for folder (required)");
  flags_.add("--out", &r.out, "output folder for checkpoints, sample grids and the loss curve");
  flags_.add("--resume", &r.resume, "continue from a checkpoint file, or 'auto' for the newest in --out");
  flags_.add("--overwrite", &r.overwrite,
             "train in an --out that holds another run's checkpoints: they are moved into --out/previous-<k>/");
  flags_.add("--sample-every", &r.sample_every, "write a sample grid every N steps (0: only at the end)");
  flags_.add("--grid-sampler", &r.grid_sampler,
             "sampler of the --sample-every grids: ddim (50 steps, named samples-<step>-ddim50.png) or ddpm "
             "(Algorithm 2); the final samples.png is always Algorithm 2");
  flags_.add("--sample-n", &r.sample_n, "images in each sample grid");
  flags_.add("--ckpt-every", &r.ckpt_every, "write a checkpoint every N steps");
  flags_.add("--keep", &r.keep, "keep the newest K checkpoints this run writes (it never removes others)");
  flags_.add("--log-every", &r.log_every, "print a progress line every N steps");
  flags_.add("--inject-nan-at", &r.inject_nan_at, "debug: put a NaN into the batch of this step (tests the fault report)");
  flags_.add("--inject-nan-sample", &r.inject_nan_sample, "debug: with --inject-nan-at, the sample of the batch it goes into");
}

bool TrainRunFlags::parse(int argc, const char* const* argv) {
  if (!flags_.parse(argc, argv)) return false;
  if (!run_->preset.empty()) run_->config = preset_config(run_->preset);  // then the given flags on top
  config_flags_.apply(run_->config);
  run_->config_flags_given = config_flags_.given();
  return true;
}

namespace {

constexpr int64_t kGridDdimSteps = 50;  // the --grid-sampler ddim grids

// Every flag of the run checked before any work; the config's own bounds are validate()'s.
void check_run_flags(const TrainRun& r) {
  DDPM_CHECK(r.keep >= 1, "--keep " << r.keep << " must be at least 1");
  DDPM_CHECK(r.ckpt_every >= 1 && r.log_every >= 1 && r.sample_every >= 0 && r.sample_n >= 1,
             "--ckpt-every, --log-every and --sample-n must be positive, --sample-every non-negative");
  DDPM_CHECK(r.epochs >= 0 && r.epochs <= 1000000, "--epochs " << r.epochs << " not in 0..1000000");
  DDPM_CHECK(r.grid_sampler == "ddim" || r.grid_sampler == "ddpm", "--grid-sampler '" << r.grid_sampler << "': use ddim or ddpm");
  DDPM_CHECK(r.epochs == 0 || r.config.minutes == 0, "--epochs and --minutes both choose where the run ends: give one");
  DDPM_CHECK(r.sample_n <= 4096, "--sample-n " << r.sample_n << " is more than 4096 images");
  DDPM_CHECK(r.inject_nan_at >= 0, "--inject-nan-at " << r.inject_nan_at << " must be non-negative");
  DDPM_CHECK(r.inject_nan_sample >= 0, "--inject-nan-sample " << r.inject_nan_sample << " must be non-negative");
  if (r.resume.empty()) r.config.validate();  // before the output folder is made
  check_dataset_name(r.dataset);
}

// The grid of `n` EMA samples, written to `path` by rank 0: Algorithm 2, or DDIM with 50
// steps when `ddim` (the cheap grids during training; their file names say so). The ranks
// share the images (sample_in_batches).
void write_samples(Trainer& trainer, const std::string& path, int64_t n, bool ddim, Communicator& comm) {
  const auto t0 = Clock::now();
  std::unique_ptr<UNet> ema = trainer.ema_model();
  const UNetConfig& c = ema->config();
  const TrainConfig& tc = trainer.config();
  const Schedule& s = trainer.schedule();
  const SigmaChoice sigma{c.learned_variance, tc.variance};  // a learned variance samples with its Sigma
  std::function<int64_t(int64_t)> label_of;  // a conditional model draws class i mod its classes, guided with w = 1
  if (c.num_classes > 0) label_of = [K = c.num_classes](int64_t i) { return i % K; };
  const BatchModelFn model = unet_batch_model(*ema, s, tc.predict, sigma, label_of, c.num_classes > 0 ? 1.0 : 0.0);
  SamplerChoice choice;
  if (ddim) {
    choice.sampler = "ddim";
    choice.ddim_steps = std::min<int64_t>(kGridDdimSteps, s.T);
  }
  BatchedSampleOptions o;
  o.batch = n;  // one sampler call per rank
  o.comm = &comm;
  const SampleResult r = sample_in_batches(make_sampler(s, tc.seed, choice), model, n, {c.in_ch, c.image_size, c.image_size}, o);
  if (comm.rank() != 0) return;
  write_image_grid(path, r.x0, grid_columns(n));
  std::printf("wrote %s (%lld samples, EMA weights, %s, %.1fs)\n", path.c_str(), static_cast<long long>(n),
              describe_sampler(choice, s.T, sigma).c_str(), seconds_since(t0));
  std::fflush(stdout);
}

// --resume's checkpoints, newest first: the file, or every one in --out for 'auto'.
std::vector<std::string> resume_candidates(const TrainRun& r) {
  if (r.resume != "auto") return {r.resume};
  std::vector<std::string> candidates = list_checkpoints(r.out);
  DDPM_CHECK(!candidates.empty(), "--resume auto: no checkpoint ckpt-*.safetensors in " << r.out);
  return candidates;
}

// The dataset at the size and channel count the model trains on: a resume's are its
// checkpoint's (the model config in its metadata, read by rank 0 before the data and sent
// to the other ranks, which need not see --out); a fresh run's are --image-size and
// --channels, and a folder without --image-size gets the --model's own size. A fresh run
// whose data is not the --model's own size or channel count records the data's in its
// config (train.image_size, train.channels), so a resume continues alike.
Dataset load_training_data(TrainRun& run, Communicator& comm) {
  DatasetOptions options{run.config.image_size, static_cast<int>(run.config.channels)};
  if (!run.resume.empty()) {
    int64_t sizes[2] = {options.image_size, options.channels};
    if (comm.rank() == 0) {
      try {
        for (const std::string& path : resume_candidates(run)) {
          try {
            const UNetConfig m = UNetConfig::from_metadata(load_safetensors_metadata(path), path);
            sizes[0] = m.image_size;
            sizes[1] = m.in_ch;
            break;
          } catch (const Error&) {
            // not loadable: resume_trainer skips it, or reports it when it is the last
          }
        }
      } catch (const Error&) {
        // no checkpoint: resume() reports it
      }
    }
    if (comm.size() > 1) comm.broadcast(sizes, sizeof sizes, 0);
    options = DatasetOptions{sizes[0], static_cast<int>(sizes[1])};
  } else if (run.dataset == "folder" && options.image_size == 0) {
    options.image_size = run.config.model_config().image_size;
  }
  Dataset data = load_dataset(run.dataset, run.data_dir, options);
  if (run.resume.empty()) {
    const UNetConfig own = run.config.model_config();
    if (data.images.size(2) != own.image_size) run.config.image_size = data.images.size(2);
    if (data.images.size(1) != own.in_ch) run.config.channels = data.images.size(1);
    // a conditional model gets the data's classes (a folder may have fewer than 10)
    if (run.config.conditional && run.config.classes == 0 && data.num_classes != own.num_classes &&
        data.num_classes >= 2 && data.num_classes <= 10)
      run.config.classes = data.num_classes;
  }
  return data;
}

// --resume as one process does it: applies --lr, --steps and --minutes and notes every
// other config flag it ignores.
std::unique_ptr<Trainer> resume(const TrainRun& r, Dataset data) {
  const std::vector<std::string> candidates = resume_candidates(r);
  ResumeOverrides overrides;
  for (const std::string& f : r.config_flags_given) {
    if (f == "--lr") {
      overrides.has_lr = true;
      overrides.lr = r.config.lr;
    } else if (f == "--steps") {
      overrides.has_steps = true;
      overrides.steps = r.config.steps;
    } else if (f == "--minutes") {
      overrides.has_minutes = true;
      overrides.minutes = r.config.minutes;
    } else {
      std::fprintf(stderr, "note: %s is ignored with --resume: the checkpoint's settings are used\n", f.c_str());
    }
  }
  // --resume auto takes the newest checkpoint that loads; checkpoints are written
  // atomically, so only a file damaged after the fact is skipped, with a warning.
  Resumed resumed = resume_trainer(candidates, data, overrides,
                                   [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); });
  std::printf("resumed from %s at step %lld\n", resumed.path.c_str(),
              static_cast<long long>(resumed.trainer->steps_done()));
  if (overrides.has_lr)
    std::printf("note: --lr %g replaces the checkpoint's learning rate from step %lld on (recorded in the next "
                "checkpoint's train.lr and state.lr_history)\n",
                resumed.trainer->config().lr, static_cast<long long>(resumed.trainer->steps_done()));
  if (overrides.has_steps || overrides.has_minutes)
    std::printf("note: %s replaces where the run ends (recorded in the next checkpoint's train.steps)\n",
                overrides.has_minutes ? "--minutes" : "--steps");
  return std::move(resumed.trainer);
}

// A fresh Trainer, or one resumed from --resume (a file or the newest loadable checkpoint
// in --out). Over MPI ranks, rank 0 resumes and sends its state as checkpoint bytes; the
// others build theirs from those bytes, so only rank 0 needs to see --out.
std::unique_ptr<Trainer> make_trainer(const TrainRun& r, Dataset data, Communicator& comm) {
  if (r.resume.empty()) return std::make_unique<Trainer>(r.config, std::move(data));
  if (comm.size() == 1) return resume(r, std::move(data));
  std::unique_ptr<Trainer> trainer;
  std::vector<uint8_t> bytes;
  if (comm.rank() == 0) {
    trainer = resume(r, data);
    bytes = trainer->checkpoint_bytes();
  }
  uint64_t size = bytes.size();
  comm.broadcast(&size, sizeof size, 0);
  bytes.resize(size);
  comm.broadcast(bytes.data(), static_cast<int64_t>(size), 0);
  if (comm.rank() == 0) return trainer;
  return trainer_from_checkpoint(parse_safetensors(bytes.data(), bytes.size(), "rank 0's resumed state"), data);
}

// The checks of the step this run trains to (train.steps; 0 while --minutes has not chosen it).
void check_target(const TrainRun& r, const Trainer& trainer) {
  const int64_t target = trainer.config().steps, start = trainer.steps_done();
  if (trainer.config().minutes > 0 && target == 0) return;  // chosen after kSpeedSteps steps
  DDPM_CHECK(target >= start, "the checkpoint is at step " << start << ", beyond the target " << target
                                  << ": --steps is the total step count, not the steps to add; pass --steps "
                                  << start + 1 << " or more to train on");
  if (target == start && start > 0)
    std::printf("note: the checkpoint is already at the target step %lld: nothing to train; pass a larger --steps "
                "to train on (the final sample grid is written)\n",
                static_cast<long long>(target));
  DDPM_CHECK(r.inject_nan_at == 0 || (r.inject_nan_at > start && r.inject_nan_at <= target),
             "--inject-nan-at " << r.inject_nan_at << " is not a step this run trains (" << start + 1 << ".." << target
                                << ")");
}

// --minutes: the target step from the time per step measured over this run's steps
// [first + 1, now] (the first step of a run is slower: caches, the pool), with the minutes
// of training already spent counted. Grids and checkpoints are not training time.
int64_t target_from_speed(double minutes, int64_t now, double seconds_per_step, double train_seconds) {
  const double left = std::max(0.0, minutes * 60.0 - train_seconds);
  return now + static_cast<int64_t>(std::floor(left / seconds_per_step));
}

// Whether `flag` is up on any rank (every rank must ask alike).
bool on_any_rank(Communicator& comm, bool flag) {
  if (comm.size() == 1) return flag;
  for (uint64_t f : allgather_u64(comm, flag ? 1 : 0))
    if (f) return true;
  return false;
}

// The dataset's bits, which every rank must read alike.
uint64_t dataset_hash(const Dataset& data) {
  Fnv1a fnv;
  fnv.add(data.images.data(), static_cast<size_t>(data.images.numel()) * sizeof(float));
  fnv.add(data.labels.data(), data.labels.size() * sizeof(data.labels[0]));
  return fnv.h;
}

// The run's first line: the model, the schedule, the batch and how it is split, the target.
void print_start(Trainer& trainer, const Communicator& comm) {  // model() is not const
  const TrainConfig& tc = trainer.config();
  std::string split;  // " (12 micro-batches of 4, Open MPI v4.1.4, 3 ranks)"
  if (tc.micro_batch > 0) split = std::to_string(trainer.micro_batches()) + " micro-batches of " + std::to_string(tc.micro_batch);
  if (comm.size() > 1) split += (split.empty() ? "" : ", ") + comm.describe();
  if (!split.empty()) split = " (" + split + ")";
  std::printf("model %s (%lld parameters), %s schedule T=%lld, batch %lld%s, lr %g (%s), EMA %g, %d threads, %s\n",
              tc.model.c_str(), static_cast<long long>(trainer.model().num_parameters()), tc.schedule.c_str(),
              static_cast<long long>(tc.T), static_cast<long long>(tc.batch), split.c_str(), tc.lr,
              lr_schedule_name(tc.lr_schedule), tc.ema, num_threads(),
              tc.steps > 0 ? ("target step " + std::to_string(tc.steps)).c_str()
                           : ("target step chosen by --minutes after " + std::to_string(kSpeedSteps + 1) + " steps").c_str());
  std::fflush(stdout);
}

// The loop of one run and what it does around each step: progress, the --minutes target,
// checkpoints, grids; then the loss curve and the final grid. Over MPI ranks every rank runs
// it alike; rank 0 alone holds the folder (nullptr elsewhere) and writes files.
class TrainLoop {
 public:
  TrainLoop(const TrainRun& run, Trainer& trainer, RunFolder* folder, Communicator& comm)
      : r_(run), trainer_(trainer), folder_(folder), comm_(comm), tc_(trainer.config()),
        first_step_(trainer.steps_done()), last_saved_(first_step_) {}

  // Trains until the target step or a stop (`interrupted`, Ctrl-C, is the trainer's stop
  // flag: every rank stops at the same step). Returns the exit code (3: a non-finite loss or
  // gradient stopped it).
  int run(const std::atomic<bool>& interrupted) {
    bool stopped = false;
    while (!(tc_.steps > 0 && trainer_.steps_done() >= tc_.steps)) {
      const auto t0 = Clock::now();
      double loss;
      try {
        loss = trainer_.step();
      } catch (const StepInterrupted&) {
        stopped = true;
        break;
      } catch (const NonFiniteError& e) {
        if (!folder_) return 3;  // rank 0 reports
        std::fprintf(stderr, "error: training stopped: %s\n", e.what());
        const auto found = list_checkpoints(r_.out);
        if (!found.empty()) std::fprintf(stderr, "the last good checkpoint is %s (--resume auto)\n", found.front().c_str());
        return 3;
      }
      train_seconds_ += seconds_since(t0);
      after_step(loss);
    }
    if (trainer_.steps_done() != last_saved_) save();
    report_communication();
    // Interrupted: a step was abandoned, or Ctrl-C came during the last step (on any rank).
    if (stopped || on_any_rank(comm_, interrupted)) {
      if (trainer_.steps_done() == first_step_) std::printf("interrupted before the first step of this run: nothing new to save\n");
      else std::printf("interrupted: checkpoint saved; continue with --resume auto --out %s\n", r_.out.c_str());
      return 0;
    }
    finish();
    return 0;
  }

 private:
  std::string target_text() const { return tc_.steps > 0 ? std::to_string(tc_.steps) : "?"; }

  void after_step(double loss) {
    const int64_t k = trainer_.steps_done();
    if (k == first_step_ + 1) timed_from_ = train_seconds_;
    if (tc_.steps == 0 && k == first_step_ + 1 + kSpeedSteps) choose_target(k);
    smoothed_ = std::isnan(smoothed_) ? loss : 0.98 * smoothed_ + 0.02 * loss;
    curve_x_.push_back(static_cast<double>(k));
    curve_y_.push_back(loss);
    if (k % r_.log_every == 0 || k == tc_.steps) progress(k, loss);
    if (k % r_.ckpt_every == 0) save();
    if (r_.sample_every > 0 && k % r_.sample_every == 0) grid(k);
  }

  // --minutes: the target from the speed of the kSpeedSteps steps after the first, by rank 0's clock.
  void choose_target(int64_t k) {
    const double per_step = (train_seconds_ - timed_from_) / kSpeedSteps;
    int64_t target = std::max(k, target_from_speed(tc_.minutes, k, per_step, train_seconds_));
    comm_.broadcast(&target, sizeof target, 0);
    trainer_.set_target(target);
    std::printf("--minutes %g: %.1f img/s over steps %lld-%lld, so the target is step %lld\n", tc_.minutes,
                static_cast<double>(tc_.batch) / per_step, static_cast<long long>(first_step_ + 2),
                static_cast<long long>(k), static_cast<long long>(tc_.steps));
    std::fflush(stdout);
  }

  void progress(int64_t k, double loss) {
    const double per_step = train_seconds_ / static_cast<double>(k - first_step_);
    std::printf("step %6lld/%s  epoch %.2f  loss %.4f (smoothed %.4f)  %.1f img/s  training %s  eta %s\n",
                static_cast<long long>(k), target_text().c_str(), trainer_.epoch_progress(), loss, smoothed_,
                static_cast<double>(tc_.batch) / per_step, format_duration(train_seconds_).c_str(),
                tc_.steps > 0 ? format_duration(per_step * static_cast<double>(tc_.steps - k)).c_str() : "?");
    std::fflush(stdout);
  }

  // A checkpoint, written by rank 0 once the ranks agree on the state; older ones of this
  // process are removed only after it is safely on disk. A failed write stops training,
  // naming the newest good checkpoint.
  void save() {
    last_saved_ = trainer_.steps_done();
    if (comm_.size() > 1)
      check_same_on_every_rank(comm_, trainer_.state_hash(), "the training state at step " + std::to_string(last_saved_));
    if (!folder_) return;
    const std::string path = checkpoint_path(r_.out, trainer_.steps_done());
    try {
      trainer_.save_checkpoint(path);
    } catch (const Error& e) {
      const auto found = list_checkpoints(r_.out);
      DDPM_FAIL("training stopped at step " << trainer_.steps_done() << ": cannot write checkpoint " << path << ": "
                                            << e.what() << (found.empty() ? "" : "; the last good checkpoint is " +
                                                                                     found.front() + " (--resume auto)"));
    }
    folder_->wrote(path);
    folder_->prune(r_.keep, path);
    std::printf("saved %s\n", path.c_str());
    std::fflush(stdout);
  }

  void grid(int64_t k) {
    const bool ddim = r_.grid_sampler == "ddim";
    char name[64];
    std::snprintf(name, sizeof name, ddim ? "/samples-%08lld-ddim%lld.png" : "/samples-%08lld.png",
                  static_cast<long long>(k), static_cast<long long>(std::min<int64_t>(kGridDdimSteps, tc_.T)));
    write_samples(trainer_, r_.out + name, r_.sample_n, ddim, comm_);
    if (!ddim) {
      last_grid_ = r_.out + name;
      last_grid_step_ = k;
    }
  }

  // Over ranks: the time the steps spent in collectives.
  void report_communication() const {
    if (comm_.size() == 1 || trainer_.steps_done() == first_step_) return;
    std::printf("communication: %.1f s of %.1f s of training steps (%.1f%%) in the ranks' collectives, waiting for "
                "the slowest rank included\n",
                trainer_.comm_seconds(), train_seconds_, 100.0 * trainer_.comm_seconds() / train_seconds_);
  }

  // loss.svg and samples.png (Algorithm 2; a copy when this run's last step drew it).
  void finish() {
    if (folder_ && !curve_x_.empty()) {
      PlotOptions po;
      po.title = std::string("Training loss (") + loss_name(tc_.loss) + ")";
      po.x_label = "step";
      po.y_label = "loss";
      po.log_y = true;
      write_line_plot(r_.out + "/loss.svg", {PlotSeries{"loss (per step)", curve_x_, curve_y_, ""}}, po);
      std::printf("wrote %s/loss.svg\n", r_.out.c_str());
    }
    if (last_grid_step_ == trainer_.steps_done()) {
      if (!folder_) return;
      write_file_atomic(r_.out + "/samples.png", read_file_bytes(last_grid_));
      std::printf("wrote %s/samples.png (a copy of %s)\n", r_.out.c_str(), last_grid_.c_str());
    } else {
      write_samples(trainer_, r_.out + "/samples.png", r_.sample_n, /*ddim=*/false, comm_);
    }
  }

  const TrainRun& r_;
  Trainer& trainer_;
  RunFolder* folder_;  // rank 0's; nullptr on the other ranks
  Communicator& comm_;
  const TrainConfig& tc_;
  const int64_t first_step_;
  int64_t last_saved_;
  std::vector<double> curve_x_, curve_y_;
  double smoothed_ = NAN;
  double train_seconds_ = 0, timed_from_ = 0;  // time inside Trainer::step(); the time before the timed steps
  std::string last_grid_;                      // the Algorithm 2 grid this run wrote last, and its step
  int64_t last_grid_step_ = -1;
};

}  // namespace

int train_run(const TrainRun& r, const std::atomic<bool>& interrupted) {
  SingleProcess one;
  return train_run(r, interrupted, one);
}

int train_run(const TrainRun& r, const std::atomic<bool>& interrupted, Communicator& comm) {
  const int threads = check_threads_flag(r.threads);
  check_run_flags(r);
  set_num_threads(threads);
  // Rank 0 alone owns the output folder: created, checked writable and locked before any
  // real work; dead writers' temp files removed.
  std::unique_ptr<RunFolder> folder = comm.rank() == 0 ? std::make_unique<RunFolder>(r.out) : nullptr;
  // Every rank reads the data itself (docs/scaling.md says why), and they check they read the same.
  TrainRun run = r;  // --epochs and --minutes set where it ends; the data its size and channels
  Dataset data = load_training_data(run, comm);
  if (comm.size() > 1) check_same_on_every_rank(comm, dataset_hash(data), "the dataset (--dataset " + r.dataset + ")");
  if (run.epochs > 0) {
    run.config.steps = (run.epochs * data.size() + run.config.batch - 1) / run.config.batch;  // the real dataset size
    run.config_flags_given.push_back("--steps");
  }
  if (run.config.minutes > 0 && run.resume.empty()) run.config.steps = 0;  // chosen once the speed is known
  std::unique_ptr<Trainer> trainer = make_trainer(run, std::move(data), comm);
  if (comm.size() > 1) {
    trainer->distribute(comm);
    check_same_on_every_rank(comm, trainer->state_hash(), "the training state at the start");
  }
  trainer->set_stop_flag(&interrupted);
  // Never mix with, or replace, checkpoints this run did not write.
  const std::string aside = folder ? folder->claim(trainer->steps_done(), !r.resume.empty(), r.overwrite) : "";
  if (!aside.empty()) std::printf("--overwrite: moved the earlier checkpoints of %s into %s/\n", r.out.c_str(), aside.c_str());
  check_target(r, *trainer);
  print_start(*trainer, comm);
  if (r.inject_nan_at > 0) trainer->inject_nan(r.inject_nan_at, r.inject_nan_sample);
  return TrainLoop(r, *trainer, folder.get(), comm).run(interrupted);
}

}  // namespace ddpm

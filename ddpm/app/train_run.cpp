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
#include "ddpm/core/parallel.h"
#include "ddpm/data/dataset.h"
#include "ddpm/io/file.h"
#include "ddpm/io/png.h"
#include "ddpm/io/svg.h"
#include "ddpm/train/checkpoint.h"
#include "ddpm/train/trainer.h"

namespace ddpm {

TrainRunFlags::TrainRunFlags(TrainRun* run)
    : run_(run),
      flags_("train_mnist", "Train a DDPM U-Net on MNIST with Algorithm 1 (L_simple) of Ho et al. 2020."),
      config_flags_(flags_, run->config) {
  TrainRun& r = *run;
  flags_.add("--steps", &r.steps, "total training steps (a resume continues to this step)");
  flags_.add("--epochs", &r.epochs, "if > 0, train this many epochs of the dataset instead of --steps");
  flags_.add("--threads", &r.threads, "worker threads (results do not depend on it)");
  flags_.add("--dataset", &r.dataset, "mnist or fashion (Fashion-MNIST from Debian's dataset-fashion-mnist)");
  flags_.add("--data", &r.data_dir,
             "folder with the four IDX files, gzipped or not; empty: data/mnist, or the Debian folder for fashion");
  flags_.add("--out", &r.out, "output folder for checkpoints, sample grids and the loss curve");
  flags_.add("--resume", &r.resume, "continue from a checkpoint file, or 'auto' for the newest in --out");
  flags_.add("--overwrite", &r.overwrite,
             "train in an --out that holds another run's checkpoints: they are moved into --out/previous-<k>/");
  flags_.add("--sample-every", &r.sample_every, "write a sample grid every N steps (0: only at the end)");
  flags_.add("--sample-n", &r.sample_n, "images in each sample grid");
  flags_.add("--ckpt-every", &r.ckpt_every, "write a checkpoint every N steps");
  flags_.add("--keep", &r.keep, "keep the newest K checkpoints this run writes (it never removes others)");
  flags_.add("--log-every", &r.log_every, "print a progress line every N steps");
  flags_.add("--inject-nan-at", &r.inject_nan_at, "debug: put a NaN into the batch of this step (tests the fault report)");
}

bool TrainRunFlags::parse(int argc, const char* const* argv) {
  if (!flags_.parse(argc, argv)) return false;
  config_flags_.apply(run_->config);
  run_->config_flags_given = config_flags_.given();
  return true;
}

namespace {

// Every flag of the run checked before any work; the config's own bounds are validate()'s.
void check_run_flags(const TrainRun& r) {
  DDPM_CHECK(r.keep >= 1, "--keep " << r.keep << " must be at least 1");
  DDPM_CHECK(r.ckpt_every >= 1 && r.log_every >= 1 && r.sample_every >= 0 && r.sample_n >= 1,
             "--ckpt-every, --log-every and --sample-n must be positive, --sample-every non-negative");
  DDPM_CHECK(r.steps >= 0 && r.epochs >= 0 && r.epochs <= 1000000, "--steps must be non-negative, --epochs in 0..1000000");
  DDPM_CHECK(r.sample_n <= 4096, "--sample-n " << r.sample_n << " is more than 4096 images");
  DDPM_CHECK(r.inject_nan_at >= 0, "--inject-nan-at " << r.inject_nan_at << " must be non-negative");
  if (r.resume.empty()) r.config.validate();  // before the output folder is made
  check_dataset_name(r.dataset);
}

// The grid of `n` EMA samples (Algorithm 2), written to `path`.
void write_samples(Trainer& trainer, const std::string& path, int64_t n) {
  const auto t0 = Clock::now();
  std::unique_ptr<UNet> ema = trainer.ema_model();
  const UNetConfig& c = ema->config();
  const TrainConfig& tc = trainer.config();
  std::vector<int64_t> labels;  // a conditional model draws digit i mod 10, guided with w = 1
  for (int64_t i = 0; i < n; i++) labels.push_back(i % 10);
  const Schedule& s = trainer.schedule();
  const SigmaChoice sigma{c.learned_variance, tc.variance};  // a learned variance samples with its Sigma
  const ModelFn model = unet_model(*ema, s, tc.predict, sigma, c.num_classes > 0 ? &labels : nullptr,
                                   c.num_classes > 0 ? 1.0 : 0.0);
  const SampleResult r = sample(s, model, {n, c.in_ch, c.image_size, c.image_size}, tc.seed);
  write_image_grid(path, r.x0, grid_columns(n));
  std::printf("wrote %s (%lld samples, EMA weights, %lld steps of Algorithm 2, %.1fs)\n", path.c_str(),
              static_cast<long long>(n), static_cast<long long>(s.T), seconds_since(t0));
  std::fflush(stdout);
}

// A fresh Trainer, or one resumed from --resume (a file or the newest loadable checkpoint
// in --out); the resume applies --lr and notes every other config flag it ignores.
std::unique_ptr<Trainer> make_trainer(const TrainRun& r, Dataset data) {
  if (r.resume.empty()) return std::make_unique<Trainer>(r.config, std::move(data));
  std::vector<std::string> candidates{r.resume};
  if (r.resume == "auto") {
    candidates = list_checkpoints(r.out);
    DDPM_CHECK(!candidates.empty(), "--resume auto: no checkpoint ckpt-*.safetensors in " << r.out);
  }
  ResumeOverrides overrides;
  for (const std::string& f : r.config_flags_given) {
    if (f == "--lr") {
      overrides.has_lr = true;
      overrides.lr = r.config.lr;
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
  return std::move(resumed.trainer);
}

// The step this run trains to: --steps, or --epochs of the dataset's real size.
int64_t target_step(const TrainRun& r, const Trainer& trainer) {
  const int64_t B = trainer.config().batch;
  const int64_t target = r.epochs > 0 ? (r.epochs * trainer.data_size() + B - 1) / B : r.steps;
  const int64_t start = trainer.steps_done();
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
  return target;
}

}  // namespace

int train_run(const TrainRun& r, const std::atomic<bool>& interrupted) {
  const int threads = check_threads_flag(r.threads);
  check_run_flags(r);
  set_num_threads(threads);
  // Created, checked writable and locked before any real work; removes dead writers' temp files.
  RunFolder folder(r.out);
  Dataset data = load_dataset(r.dataset, r.data_dir);
  std::unique_ptr<Trainer> trainer = make_trainer(r, std::move(data));
  // Never mix with, or replace, checkpoints this run did not write.
  const std::string aside = folder.claim(trainer->steps_done(), !r.resume.empty(), r.overwrite);
  if (!aside.empty()) std::printf("--overwrite: moved the earlier checkpoints of %s into %s/\n", r.out.c_str(), aside.c_str());
  const TrainConfig& tc = trainer->config();
  const int64_t target = target_step(r, *trainer);
  std::printf("model %s (%lld parameters), %s schedule T=%lld, batch %lld, lr %g, EMA %g, %d threads, target %lld steps\n",
              tc.model.c_str(), static_cast<long long>(trainer->model().num_parameters()), tc.schedule.c_str(),
              static_cast<long long>(tc.T), static_cast<long long>(tc.batch), tc.lr, tc.ema, num_threads(),
              static_cast<long long>(target));
  std::fflush(stdout);
  if (r.inject_nan_at > 0) trainer->inject_nan(r.inject_nan_at);

  // A checkpoint; older ones of this process are removed only after it is safely on disk.
  // A failed write stops training, naming the newest good checkpoint.
  auto save = [&]() {
    const std::string path = checkpoint_path(r.out, trainer->steps_done());
    try {
      trainer->save_checkpoint(path);
    } catch (const Error& e) {
      const auto found = list_checkpoints(r.out);
      DDPM_FAIL("training stopped at step " << trainer->steps_done() << ": cannot write checkpoint " << path << ": "
                                            << e.what() << (found.empty() ? "" : "; the last good checkpoint is " +
                                                                                     found.front() + " (--resume auto)"));
    }
    folder.wrote(path);
    folder.prune(r.keep, path);
    std::printf("saved %s\n", path.c_str());
    std::fflush(stdout);
  };

  std::vector<double> curve_x, curve_y;
  double smoothed = NAN;
  const auto start = Clock::now();
  const int64_t first_step = trainer->steps_done();
  int64_t last_saved = first_step;
  std::string last_grid;  // the grid this run wrote last, and its step (-1: none yet)
  int64_t last_grid_step = -1;
  while (trainer->steps_done() < target && !interrupted) {
    double loss;
    try {
      loss = trainer->step();
    } catch (const NonFiniteError& e) {
      std::fprintf(stderr, "error: training stopped: %s\n", e.what());
      const auto found = list_checkpoints(r.out);
      if (!found.empty()) std::fprintf(stderr, "the last good checkpoint is %s (--resume auto)\n", found.front().c_str());
      return 3;
    }
    smoothed = std::isnan(smoothed) ? loss : 0.98 * smoothed + 0.02 * loss;
    const int64_t k = trainer->steps_done();
    curve_x.push_back(static_cast<double>(k));
    curve_y.push_back(loss);
    if (k % r.log_every == 0 || k == target) {
      const double elapsed = seconds_since(start), per_step = elapsed / static_cast<double>(k - first_step);
      std::printf("step %6lld/%lld  epoch %.2f  loss %.4f (smoothed %.4f)  %.1f img/s  elapsed %s  eta %s\n",
                  static_cast<long long>(k), static_cast<long long>(target), trainer->epoch_progress(), loss, smoothed,
                  static_cast<double>(tc.batch) / per_step, format_duration(elapsed).c_str(),
                  format_duration(per_step * static_cast<double>(target - k)).c_str());
      std::fflush(stdout);
    }
    if (k % r.ckpt_every == 0) {
      save();
      last_saved = k;
    }
    if (r.sample_every > 0 && k % r.sample_every == 0) {
      char name[64];
      std::snprintf(name, sizeof name, "/samples-%08lld.png", static_cast<long long>(k));
      last_grid = r.out + name;
      last_grid_step = k;
      write_samples(*trainer, last_grid, r.sample_n);
    }
  }
  if (trainer->steps_done() != last_saved) save();
  if (interrupted) {
    if (trainer->steps_done() == first_step) std::printf("interrupted before the first step of this run: nothing new to save\n");
    else std::printf("interrupted: checkpoint saved; continue with --resume auto --out %s\n", r.out.c_str());
    return 0;
  }
  if (!curve_x.empty()) {
    PlotOptions po;
    po.title = std::string("Training loss (") + loss_name(tc.loss) + ")";
    po.x_label = "step";
    po.y_label = "loss";
    po.log_y = true;
    write_line_plot(r.out + "/loss.svg", {PlotSeries{"loss (per step)", curve_x, curve_y, ""}}, po);
    std::printf("wrote %s/loss.svg\n", r.out.c_str());
  }
  if (last_grid_step == trainer->steps_done()) {  // this run's last step drew the same images: copy them
    write_file_atomic(r.out + "/samples.png", read_file_bytes(last_grid));
    std::printf("wrote %s/samples.png (a copy of %s)\n", r.out.c_str(), last_grid.c_str());
  } else {
    write_samples(*trainer, r.out + "/samples.png", r.sample_n);
  }
  return 0;
}

}  // namespace ddpm

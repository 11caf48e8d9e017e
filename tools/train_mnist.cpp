// train_mnist: train a DDPM U-Net on MNIST (Algorithm 1), with progress, sample grids,
// exact checkpoints and resume. `./train_mnist --help` lists every flag.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"
#include "ddpm/io/file.h"
#include "ddpm/data/mnist.h"
#include "ddpm/io/png.h"
#include "ddpm/io/svg.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/core/parallel.h"
#include "ddpm/app/run_folder.h"
#include "ddpm/app/sampling.h"
#include "ddpm/train/trainer.h"

using namespace ddpm;

namespace {

std::atomic<bool> g_interrupted{false};
// The first Ctrl-C (or SIGTERM) asks for a checkpoint and a clean exit; a second one
// kills at once (safe too: checkpoints are written atomically).
void on_sigint(int sig) {
  g_interrupted = true;
  std::signal(sig, SIG_DFL);
}

const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

Dataset load_dataset(const std::string& dataset, const std::string& dir) {
  std::string d = dir;
  if (d.empty()) {
    if (dataset == "mnist") d = "data/mnist";
    else if (dataset == "fashion") d = kFashionDir;
    else DDPM_FAIL("unknown --dataset '" << dataset << "': use mnist or fashion");
  }
  if (dataset == "fashion" && dir.empty()) {
    struct stat st;
    DDPM_CHECK(stat(d.c_str(), &st) == 0, "Fashion-MNIST not found at " << d
                                           << ": install Debian's package (apt-get install -y dataset-fashion-mnist)"
                                              " or pass --data DIR");
  }
  MnistSplit split = load_mnist(d, "train");
  return Dataset{split.images, split.labels};
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

void write_samples(Trainer& trainer, const std::string& path, int64_t n, uint64_t seed, VarianceType variance) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<UNet> ema = trainer.ema_model();
  const UNetConfig& c = ema->config();
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; i++) labels.push_back(i % 10);
  const Schedule& sch = trainer.schedule();
  SigmaChoice sigma;
  sigma.learned = c.learned_variance;  // --learned-variance samples with its learned Sigma
  sigma.fixed = variance;
  const ModelFn model = unet_model(*ema, sch, trainer.config().predict, sigma, c.num_classes > 0 ? &labels : nullptr,
                                   c.num_classes > 0 ? 1.0 : 0.0);
  SampleResult r = sample(sch, model, {n, c.in_ch, c.image_size, c.image_size}, seed);
  const int64_t nrow = std::max<int64_t>(1, std::lround(std::sqrt(static_cast<double>(n))));
  write_image_grid(path, r.x0, nrow);
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s (%lld samples, EMA weights, %lld steps of Algorithm 2, %.1fs)\n", path.c_str(),
              static_cast<long long>(n), static_cast<long long>(trainer.schedule().T), dt);
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  TrainConfig cfg;
  int64_t steps = 2000, epochs = 0, threads = default_threads();
  int64_t sample_every = 1000, sample_n = 36, ckpt_every = 500, keep = 3, log_every = 10;
  int64_t inject_nan_at = 0;
  std::string out = "out", resume, dataset = "mnist", data_dir;
  bool overwrite = false;
  Flags flags("train_mnist", "Train a DDPM U-Net on MNIST with Algorithm 1 (L_simple) of Ho et al. 2020.");
  TrainConfigFlags config_flags(flags, cfg);  // the training config's table (ddpm/train/trainer.h)
  flags.add("--steps", &steps, "total training steps (a resume continues to this step)");
  flags.add("--epochs", &epochs, "if > 0, train this many epochs of the dataset instead of --steps");
  flags.add("--threads", &threads, "worker threads (results do not depend on it)");
  flags.add("--dataset", &dataset, "mnist or fashion (Fashion-MNIST from Debian's dataset-fashion-mnist)");
  flags.add("--data", &data_dir,
            "folder with the four IDX files, gzipped or not; empty: data/mnist, or the Debian folder for fashion");
  flags.add("--out", &out, "output folder for checkpoints, sample grids and the loss curve");
  flags.add("--resume", &resume, "continue from a checkpoint file, or 'auto' for the newest in --out");
  flags.add("--overwrite", &overwrite,
            "train in an --out that holds another run's checkpoints: they are moved into --out/previous-<k>/");
  flags.add("--sample-every", &sample_every, "write a sample grid every N steps (0: only at the end)");
  flags.add("--sample-n", &sample_n, "images in each sample grid");
  flags.add("--ckpt-every", &ckpt_every, "write a checkpoint every N steps");
  flags.add("--keep", &keep, "keep the newest K checkpoints this run writes (it never removes others)");
  flags.add("--log-every", &log_every, "print a progress line every N steps");
  flags.add("--inject-nan-at", &inject_nan_at, "debug: put a NaN into the batch of this step (tests the fault report)");
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  const int n_threads = check_threads_flag(threads);
  DDPM_CHECK(keep >= 1, "--keep " << keep << " must be at least 1");
  DDPM_CHECK(ckpt_every >= 1 && log_every >= 1 && sample_every >= 0 && sample_n >= 1,
             "--ckpt-every, --log-every and --sample-n must be positive, --sample-every non-negative");
  DDPM_CHECK(steps >= 0 && epochs >= 0 && epochs <= 1000000, "--steps must be non-negative, --epochs in 0..1000000");
  DDPM_CHECK(sample_n <= 4096, "--sample-n " << sample_n << " is more than 4096 images");
  DDPM_CHECK(inject_nan_at >= 0, "--inject-nan-at " << inject_nan_at << " must be non-negative");
  config_flags.apply(cfg);
  if (resume.empty()) cfg.validate();  // before the output folder is made
  DDPM_CHECK(dataset == "mnist" || dataset == "fashion", "unknown --dataset '" << dataset << "': use mnist or fashion");
  set_num_threads(n_threads);
  // Created, checked writable and locked before any real work; removes dead writers' temp files.
  RunFolder folder(out);
  // A file size limit (ulimit -f) would kill us with SIGXFSZ; ignored, the write fails
  // with EFBIG and the checkpoint writer reports it.
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);

  Dataset data = load_dataset(dataset, data_dir);
  std::unique_ptr<Trainer> trainer;
  if (!resume.empty()) {
    std::vector<std::string> candidates{resume};
    if (resume == "auto") {
      candidates = list_checkpoints(out);
      DDPM_CHECK(!candidates.empty(), "--resume auto: no checkpoint ckpt-*.safetensors in " << out);
    }
    ResumeOverrides overrides;
    for (const std::string& f : config_flags.given()) {
      if (f == "--lr") {
        overrides.has_lr = true;
        overrides.lr = cfg.lr;
      } else {
        std::fprintf(stderr, "note: %s is ignored with --resume: the checkpoint's settings are used\n", f.c_str());
      }
    }
    // --resume auto takes the newest checkpoint that loads; checkpoints are written
    // atomically, so only a file damaged after the fact is skipped, with a warning.
    Resumed r = resume_trainer(candidates, data, overrides,
                               [](const std::string& w) { std::fprintf(stderr, "warning: %s\n", w.c_str()); });
    trainer = std::move(r.trainer);
    std::printf("resumed from %s at step %lld\n", r.path.c_str(), static_cast<long long>(trainer->steps_done()));
    if (overrides.has_lr)
      std::printf("note: --lr %g replaces the checkpoint's learning rate from step %lld on (recorded in the next "
                  "checkpoint's train.lr and state.lr_history)\n",
                  trainer->config().lr, static_cast<long long>(trainer->steps_done()));
  } else {
    trainer = std::make_unique<Trainer>(cfg, std::move(data));
  }
  // Never mix with, or replace, checkpoints this run did not write.
  const std::string aside = folder.claim(trainer->steps_done(), !resume.empty(), overwrite);
  if (!aside.empty()) std::printf("--overwrite: moved the earlier checkpoints of %s into %s/\n", out.c_str(), aside.c_str());
  const TrainConfig& tc = trainer->config();
  int64_t target = steps;
  if (epochs > 0) target = (epochs * trainer->data_size() + tc.batch - 1) / tc.batch;  // the dataset's real size
  const int64_t start_step = trainer->steps_done();
  DDPM_CHECK(target >= start_step, "the checkpoint is at step " << start_step << ", beyond the target " << target
                                       << ": --steps is the total step count, not the steps to add; pass --steps "
                                       << start_step + 1 << " or more to train on");
  if (target == start_step && start_step > 0)
    std::printf("note: the checkpoint is already at the target step %lld: nothing to train; pass a larger --steps "
                "to train on (the final sample grid is written)\n",
                static_cast<long long>(target));
  DDPM_CHECK(inject_nan_at == 0 || (inject_nan_at > start_step && inject_nan_at <= target),
             "--inject-nan-at " << inject_nan_at << " is not a step this run trains (" << start_step + 1 << ".."
                                << target << ")");
  std::printf("model %s (%lld parameters), %s schedule T=%lld, batch %lld, lr %g, EMA %g, %d threads, target %lld steps\n",
              tc.model.c_str(), static_cast<long long>(trainer->model().num_parameters()), tc.schedule.c_str(),
              static_cast<long long>(tc.T), static_cast<long long>(tc.batch), tc.lr, tc.ema, num_threads(),
              static_cast<long long>(target));
  std::fflush(stdout);

  if (inject_nan_at > 0) trainer->inject_nan(inject_nan_at);
  // Older checkpoints of this process are removed only after the new one is safely on
  // disk (RunFolder::prune). A failed write stops training, naming the newest good checkpoint.
  auto save = [&]() {
    std::string path = checkpoint_path(out, trainer->steps_done());
    try {
      trainer->save_checkpoint(path);
    } catch (const Error& e) {
      auto found = list_checkpoints(out);
      DDPM_FAIL("training stopped at step " << trainer->steps_done() << ": cannot write checkpoint " << path << ": "
                                            << e.what() << (found.empty() ? "" : "; the last good checkpoint is " +
                                                                                     found.front() + " (--resume auto)"));
    }
    folder.wrote(path);
    folder.prune(keep, path);  // only checkpoints this process wrote
    std::printf("saved %s\n", path.c_str());
    std::fflush(stdout);
  };

  std::vector<double> curve_x, curve_y;
  double smoothed = NAN;
  const auto start = std::chrono::steady_clock::now();
  const int64_t first_step = trainer->steps_done();
  int64_t last_saved = first_step;
  std::string last_grid;          // the grid this run wrote last, and its step (-1: none yet)
  int64_t last_grid_step = -1;
  while (trainer->steps_done() < target && !g_interrupted) {
    double loss;
    try {
      loss = trainer->step();
    } catch (const NonFiniteError& e) {
      std::fprintf(stderr, "error: training stopped: %s\n", e.what());
      auto found = list_checkpoints(out);
      if (!found.empty()) std::fprintf(stderr, "the last good checkpoint is %s (--resume auto)\n", found.front().c_str());
      return 3;
    }
    smoothed = std::isnan(smoothed) ? loss : 0.98 * smoothed + 0.02 * loss;
    const int64_t k = trainer->steps_done();
    curve_x.push_back(static_cast<double>(k));
    curve_y.push_back(loss);
    if (k % log_every == 0 || k == target) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      double per_step = elapsed / static_cast<double>(k - first_step);
      std::printf("step %6lld/%lld  epoch %.2f  loss %.4f (smoothed %.4f)  %.1f img/s  elapsed %s  eta %s\n",
                  static_cast<long long>(k), static_cast<long long>(target), trainer->epoch_progress(), loss, smoothed,
                  static_cast<double>(tc.batch) / per_step, format_duration(elapsed).c_str(),
                  format_duration(per_step * static_cast<double>(target - k)).c_str());
      std::fflush(stdout);
    }
    if (k % ckpt_every == 0) {
      save();
      last_saved = k;
    }
    if (sample_every > 0 && k % sample_every == 0) {
      char name[64];
      std::snprintf(name, sizeof name, "/samples-%08lld.png", static_cast<long long>(k));
      last_grid = out + name;
      last_grid_step = k;
      write_samples(*trainer, last_grid, sample_n, tc.seed, tc.variance);
    }
  }
  if (trainer->steps_done() != last_saved) save();
  if (g_interrupted) {
    if (trainer->steps_done() == first_step)
      std::printf("interrupted before the first step of this run: nothing new to save\n");
    else
      std::printf("interrupted: checkpoint saved; continue with --resume auto --out %s\n", out.c_str());
    return 0;
  }
  if (!curve_x.empty()) {
    PlotSeries s{"loss (per step)", curve_x, curve_y, ""};
    PlotOptions po;
    po.title = std::string("Training loss (") + (tc.loss == LossType::weighted ? "weighted" : "simple") + ")";
    po.x_label = "step";
    po.y_label = "loss";
    po.log_y = true;
    write_line_plot(out + "/loss.svg", {s}, po);
    std::printf("wrote %s/loss.svg\n", out.c_str());
  }
  if (last_grid_step == trainer->steps_done()) {  // this run's last step drew the same images: copy them
    write_file_atomic(out + "/samples.png", read_file_bytes(last_grid));
    std::printf("wrote %s/samples.png (a copy of %s)\n", out.c_str(), last_grid.c_str());
  } else {
    write_samples(*trainer, out + "/samples.png", sample_n, tc.seed, tc.variance);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool(run, argc, argv); }

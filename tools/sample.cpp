// sample: draw images from a trained checkpoint with Algorithm 2, and the figures of the
// derivation: the denoising chain, the forward process, an animated GIF of the chain and,
// for a class-conditional model, one row per digit. `./sample --help` lists every flag.
//
//   ./sample --checkpoint out/ckpt-00004000.safetensors            out/samples.png
//   ./sample --checkpoint CKPT --chain --gif --forward               + chain.png, chain.gif, forward.png
//   ./sample --forward --schedule cosine --T 1000                    forward.png only, no model
//   ./sample --checkpoint CKPT --class 3 --guidance 2                a conditional model's 3s
//   ./sample --checkpoint CKPT --sampler ddim --ddim-steps 50        DDIM (Song et al. 2021), 50 steps
//   ./sample --checkpoint CKPT --class-grid --guidance-list 0,0.5,2  class_grid_w0.png, _w0.5, _w2
//   ./sample --checkpoint CKPT --n 1000 --save-samples s.safetensors  for ./eval --samples s.safetensors
//
// The checkpoint's prediction target (train.predict: eps, x0 or v) and learned variance
// (learned_range) are read from its metadata.
//
// The noise of image i is keyed by (seed, t, i), so --batch and --threads never change
// the images; image i of samples.png is row i of chain.png.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"
#include "ddpm/data/mnist.h"
#include "ddpm/app/figures.h"
#include "ddpm/app/sampling.h"
#include "ddpm/io/gif.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/core/parallel.h"
#include "ddpm/app/run_folder.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/extensions/prediction_targets.h"
#include "ddpm/train/trainer.h"

using namespace ddpm;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Columns of a square-ish grid of n images: ceil(sqrt(n)).
int64_t grid_columns(int64_t n) {
  int64_t c = 1;
  while (c * c < n) c++;
  return c;
}

std::string join_t(const std::vector<int64_t>& t) {
  std::ostringstream os;
  for (size_t k = 0; k < t.size(); k++) os << (k ? ", " : "") << t[k];
  return os.str();
}

// The class of image i for --class: "" cycles 0..classes-1, "null" is the null class
// (unconditional sampling of a conditional model), a number is that class for every image.
struct ClassChoice {
  enum Kind { cycle, null, fixed } kind = cycle;
  int64_t label = 0;
};

ClassChoice parse_class(const std::string& s, int64_t classes) {
  ClassChoice c;
  if (s.empty()) return c;
  if (s == "null") {
    c.kind = ClassChoice::null;
    return c;
  }
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  DDPM_CHECK(errno == 0 && end != s.c_str() && *end == '\0' && v >= 0 && v < classes,
             "--class '" << s << "': use a class 0.." << classes - 1 << " or 'null' (unconditional)");
  c.kind = ClassChoice::fixed;
  c.label = v;
  return c;
}

// "0,0.5,2" -> {0, 0.5, 2}.
std::vector<double> parse_list(const std::string& flag, const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    DDPM_CHECK(!item.empty() && *end == '\0' && std::isfinite(v),
               flag << " '" << text << "': expected numbers separated by commas, like 0,0.5,2");
    out.push_back(v);
  }
  DDPM_CHECK(!out.empty(), flag << " is empty; expected numbers separated by commas, like 0,0.5,2");
  return out;
}

int run(int argc, char** argv, Communicator& comm) {
  std::string guidance_list, save_samples;
  SamplerChoice sampler_choice;
  std::string checkpoint, out = "out", variance, class_flag, data_dir = "data/mnist", schedule_name = "linear";
  int64_t n = 64, batch = 64, seed = 0, threads = default_threads();
  int64_t T = 1000, fig_rows = 8, fig_cols = 11, gif_frames = 40, log_every = 100;
  double guidance = 1.0;
  bool use_ema = true, chain = false, forward = false, gif = false, class_grid = false;
  Flags flags("sample",
              "Draw images from a checkpoint with Algorithm 2 of Ho et al. 2020 and write the figures:\n"
              "DIR/samples.png always (with a checkpoint), and chain.png, chain.gif, forward.png and\n"
              "class_grid.png when asked. Images do not depend on --batch or --threads.");
  flags.add("--checkpoint", &checkpoint, "a ./train_mnist checkpoint (.safetensors); not needed for --forward alone");
  flags.add("--n", &n, "number of images in samples.png");
  flags.add("--batch", &batch, "images per sampling batch (memory vs. speed; results are the same)");
  flags.add("--seed", &seed, "seed of the sampling noise (and of the forward-process noise)");
  flags.add("--variance", &variance,
            "sigma_t^2: fixed_large (beta_t), fixed_small (beta-tilde_t) or learned_range; empty: learned_range for a "
            "--learned-variance checkpoint, else its train.variance");
  flags.add("--ema", &use_ema, "use the EMA weights when the checkpoint has them (--no-ema: the raw weights)");
  flags.add("--class", &class_flag,
            "conditional models: the class of every image (0-9), or 'null'; empty: image i gets class i mod 10");
  flags.add("--guidance", &guidance, "conditional models: classifier-free guidance w, eps = (1+w) eps(x,c) - w eps(x,null)");
  flags.add("--guidance-list", &guidance_list,
            "with --class-grid: guidance weights like 0,0.5,2, one class_grid_w<w>.png each (same x_T for every w)");
  add_sampler_flags(flags, &sampler_choice);
  flags.add("--save-samples", &save_samples,
            "also write the samples to this safetensors file: \"samples\" [N, 1, 28, 28] clamped to [-1, 1] and, for "
            "a conditional model, \"labels\" [N] (the requested class; 10 = null) for ./eval --samples");
  flags.add("--class-grid", &class_grid, "conditional models: write class_grid.png, one row per class, --fig-cols images each");
  flags.add("--chain", &chain, "write chain.png: --fig-rows samples (rows) at --fig-cols evenly spaced t from T to 0");
  flags.add("--gif", &gif, "write chain.gif: the samples.png grid from x_T to x_0 in --gif-frames frames");
  flags.add("--gif-frames", &gif_frames, "frames of chain.gif (evenly spaced t from T to 0)");
  flags.add("--forward", &forward, "write forward.png: --fig-rows test digits at --fig-cols evenly spaced t from 0 to T");
  flags.add("--fig-rows", &fig_rows, "rows of chain.png and forward.png");
  flags.add("--fig-cols", &fig_cols, "columns (timesteps) of chain.png and forward.png; images per row of class_grid.png");
  flags.add("--data", &data_dir, "folder with the MNIST test files, for --forward");
  flags.add("--schedule", &schedule_name, "beta schedule for --forward without --checkpoint: linear, cosine, sigmoid, quadratic");
  flags.add("--T", &T, "number of diffusion steps (1.." + std::to_string(kMaxT) + ") for --forward without --checkpoint");
  flags.add("--threads", &threads, "worker threads (results do not depend on it)");
  flags.add("--out", &out, "output folder");
  flags.add("--log-every", &log_every, "print progress every N timesteps");
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  DDPM_CHECK(n >= 1 && batch >= 1, "--n " << n << " and --batch " << batch << " must be at least 1");
  DDPM_CHECK(fig_rows >= 1 && fig_cols >= 1 && gif_frames >= 1 && log_every >= 1,
             "--fig-rows, --fig-cols, --gif-frames and --log-every must be at least 1");
  const int n_threads = check_threads_flag(threads);
  DDPM_CHECK(std::isfinite(guidance), "--guidance must be a finite number");
  check_sampler_flags(flags, sampler_choice);
  const bool use_ddim = sampler_choice.sampler == "ddim";
  DDPM_CHECK(!use_ddim || (!chain && !gif),
             "--chain and --gif draw Algorithm 2's chain at evenly spaced t; drop them or use --sampler ddpm");
  DDPM_CHECK(guidance_list.empty() || class_grid, "--guidance-list needs --class-grid");
  set_num_threads(n_threads);
  const uint64_t useed = static_cast<uint64_t>(seed);

  if (checkpoint.empty()) {
    DDPM_CHECK(forward, "--checkpoint PATH is required (only --forward works without one); see --help");
    for (const char* f : {"--chain", "--gif", "--class", "--guidance", "--class-grid", "--variance", "--n", "--sampler",
                          "--ddim-steps", "--eta", "--spacing", "--guidance-list", "--save-samples"})
      DDPM_CHECK(!flags.given(f), f << " needs --checkpoint PATH");
  }

  // The model and its schedule.
  std::unique_ptr<UNet> model;
  std::map<std::string, std::string> meta;
  bool loaded_ema = false;
  Schedule schedule;
  if (!checkpoint.empty()) {
    model = load_model(checkpoint, use_ema, &meta, &loaded_ema);
    const bool has_train_config = std::any_of(meta.begin(), meta.end(), [](const auto& kv) {
      return kv.first.compare(0, 6, "train.") == 0;
    });
    if (has_train_config) {
      // The trainer's own checks of train.* (every key, every bound: T in 1..kMaxT), naming the file.
      const TrainConfig tc = TrainConfig::from_metadata(meta, checkpoint);
      DDPM_CHECK((!flags.given("--schedule") || schedule_name == tc.schedule) && (!flags.given("--T") || T == tc.T),
                 checkpoint << " was trained with the " << tc.schedule << " schedule and T = " << tc.T
                            << "; drop --schedule/--T (they are for checkpoints that do not record theirs)");
      schedule_name = tc.schedule;
      T = tc.T;
    } else {
      DDPM_CHECK(flags.given("--schedule") && flags.given("--T"),
                 checkpoint << " does not record its schedule (train.schedule, train.T); pass --schedule and --T");
    }
  }
  check_T(T, "--T");  // a checkpoint's train.T was checked by from_metadata above
  schedule = make_schedule(schedule_name, T);

  ensure_writable_dir(out);  // created if absent; a file or an unwritable folder is refused here
  const std::string prefix = out + "/";

  if (forward && comm.rank() == 0) {
    auto t0 = Clock::now();
    MnistSplit test = load_mnist(data_dir, "test");
    const int64_t rows = std::min<int64_t>(fig_rows, test.images.size(0));
    Tensor x0 = slice_batch(test.images, 0, rows);  // [rows, 1, 28, 28]
    std::vector<int64_t> t = evenly_spaced_t(0, schedule.T, fig_cols);
    Tensor fig = forward_figure(schedule, x0, t, useed);
    write_image_grid(prefix + "forward.png", fig, static_cast<int64_t>(t.size()));
    std::printf("wrote %sforward.png (%lld test digits under the %s schedule, T = %lld, at t = %s; %.1fs)\n",
                prefix.c_str(), static_cast<long long>(rows), schedule.name.c_str(), static_cast<long long>(schedule.T),
                join_t(t).c_str(), seconds_since(t0));
    std::fflush(stdout);
  }
  if (!model) return 0;

  const UNetConfig& mc = model->config();
  const bool conditional = mc.num_classes > 0;
  if (!conditional)
    for (const char* f : {"--class", "--guidance", "--class-grid"})
      DDPM_CHECK(!flags.given(f), checkpoint << " is an unconditional model (trained without --conditional); " << f
                                             << " needs a class-conditional checkpoint");
  const SigmaChoice sigma = checkpoint_sigma(mc, meta, variance);
  SampleOptions base;
  base.clip_x0 = sampler_choice.clip_x0;
  const ClassChoice choice = conditional ? parse_class(class_flag, mc.num_classes) : ClassChoice{};
  const Shape image{mc.in_ch, mc.image_size, mc.image_size};
  const PredictionTarget predict = prediction_target(meta);
  const Sampler sampler = make_sampler(schedule, useed, sampler_choice);
  const std::string how = describe_sampler(sampler_choice, schedule.T, sigma);

  // Image i gets class label_of(i) (conditional models only), guided with weight w.
  auto model_for = [&](std::function<int64_t(int64_t)> label_of, bool null_class, double w) -> BatchModelFn {
    return unet_batch_model(*model, schedule, predict, sigma, null_class ? nullptr : label_of, w);
  };
  auto progress_printer = [&](int64_t total, Clock::time_point t0) {
    const int64_t Tn = schedule.T, every = log_every;
    return [total, t0, Tn, every](int64_t first, int64_t count, int64_t t) {
      const int64_t done = Tn - t + 1;  // reverse steps done in this batch
      if (done % every != 0 && t != 1) return;
      const double elapsed = seconds_since(t0);
      const double work = static_cast<double>(first * Tn + count * done), all = static_cast<double>(total * Tn);
      std::printf("  images %lld-%lld of %lld: t=%lld/%lld  %.1fs  eta %.0fs\n", static_cast<long long>(first + 1),
                  static_cast<long long>(first + count), static_cast<long long>(total), static_cast<long long>(t - 1),
                  static_cast<long long>(Tn), elapsed, elapsed * (all - work) / work);
      std::fflush(stdout);
    };
  };

  std::printf("%s: model %s (%lld parameters, %s weights, predicts %s), %s schedule T = %lld, %s, seed %lld, "
              "%d threads\n",
              checkpoint.c_str(), mc.name.c_str(), static_cast<long long>(model->num_parameters()),
              loaded_ema ? "EMA" : "raw", target_name(predict), schedule.name.c_str(),
              static_cast<long long>(schedule.T), how.c_str(), static_cast<long long>(seed), num_threads());
  if (conditional) {
    std::ostringstream os;
    if (choice.kind == ClassChoice::null) os << "null class (unconditional)";
    else if (choice.kind == ClassChoice::fixed) os << "class " << choice.label << ", guidance w = " << guidance;
    else os << "image i has class i mod " << mc.num_classes << ", guidance w = " << guidance;
    std::printf("conditional model: %s\n", os.str().c_str());
  }
  std::fflush(stdout);

  // samples.png, with the chain kept for chain.png and chain.gif.
  {
    auto t0 = Clock::now();
    BatchedSampleOptions o;
    o.sample = base;
    o.batch = batch;
    o.comm = &comm;  // MPI ranks share the images; rank 0 writes
    if (!use_ddim) o.progress = progress_printer(n, t0);  // counts Algorithm 2's T steps
    const std::vector<int64_t> chain_t = evenly_spaced_t(schedule.T, 0, fig_cols);
    const std::vector<int64_t> gif_t = evenly_spaced_t(schedule.T, 0, gif_frames);
    if (chain) o.sample.keep_t.insert(o.sample.keep_t.end(), chain_t.begin(), chain_t.end());
    if (gif) o.sample.keep_t.insert(o.sample.keep_t.end(), gif_t.begin(), gif_t.end());
    o.chain_n = gif ? n : chain ? fig_rows : 0;
    const int64_t classes = std::max<int64_t>(mc.num_classes, 1);
    auto label_of = [choice, classes](int64_t i) { return choice.kind == ClassChoice::fixed ? choice.label : i % classes; };
    std::printf("sampling %lld images in batches of %lld (%s)\n", static_cast<long long>(n),
                static_cast<long long>(batch), how.c_str());
    std::fflush(stdout);
    SampleResult r = sample_in_batches(sampler, model_for(label_of, choice.kind == ClassChoice::null, guidance), n, image, o);
    const int64_t cols = grid_columns(n);
    if (comm.rank() == 0) write_image_grid(prefix + "samples.png", r.x0, cols);
    std::printf("wrote %ssamples.png (%lld images, %.1fs)\n", prefix.c_str(), static_cast<long long>(n), seconds_since(t0));
    if (!save_samples.empty() && comm.rank() == 0) {
      Tensor x = r.x0.clone();  // [n, C, H, W], clamped to [-1, 1] as a PNG would be
      for (int64_t j = 0; j < x.numel(); j++) x[j] = std::min(1.0f, std::max(-1.0f, x[j]));
      NamedTensors tensors = {{"samples", x}};
      if (conditional) {
        Tensor labels({n});  // the requested class of each image; num_classes is the null class
        for (int64_t i = 0; i < n; i++)
          labels[i] = static_cast<float>(choice.kind == ClassChoice::null ? mc.num_classes : label_of(i));
        tensors.push_back({"labels", labels});
      }
      save_safetensors(save_samples, tensors,
                       {{"sampler", how}, {"checkpoint", checkpoint},
                        {"guidance", conditional && choice.kind != ClassChoice::null ? std::to_string(guidance) : "0"}});
      std::printf("wrote %s (\"samples\"%s)\n", save_samples.c_str(), conditional ? " and \"labels\"" : "");
    }

    // Entries of r.chain for a list of t (kept_t is descending and unique).
    auto entries = [&r](const std::vector<int64_t>& ts) {
      SampleResult sub;
      for (int64_t t : ts) {
        auto it = std::find(r.kept_t.begin(), r.kept_t.end(), t);
        DDPM_CHECK(it != r.kept_t.end(), "sample: x_" << t << " was not kept");
        sub.kept_t.push_back(t);
        sub.chain.push_back(r.chain[static_cast<size_t>(it - r.kept_t.begin())]);
      }
      return sub;
    };
    if (chain && comm.rank() == 0) {
      const int64_t rows = std::min(fig_rows, n);
      write_image_grid(prefix + "chain.png", chain_figure(entries(chain_t), rows), static_cast<int64_t>(chain_t.size()));
      std::printf("wrote %schain.png (%lld samples, x_t at t = %s)\n", prefix.c_str(), static_cast<long long>(rows),
                  join_t(chain_t).c_str());
    }
    if (gif && comm.rank() == 0) {
      SampleResult g = entries(gif_t);
      std::vector<std::vector<uint8_t>> frames;
      std::vector<int> delays;
      Image first;
      for (size_t k = 0; k < g.chain.size(); k++) {
        Image img = image_grid(g.chain[k], cols);
        DDPM_CHECK(img.channels == 1, "sample: --gif writes gray images only, the model has " << img.channels << " channels");
        if (k == 0) first = img;
        frames.push_back(std::move(img.pixels));
        delays.push_back(k + 1 == g.chain.size() ? 300 : 10);  // 1/100 s; hold the result for 3 s
      }
      write_gif(prefix + "chain.gif", first.width, first.height, frames, delays);
      std::printf("wrote %schain.gif (%zu frames, t = %lld down to 0)\n", prefix.c_str(), frames.size(),
                  static_cast<long long>(schedule.T));
    }
    std::fflush(stdout);
  }

  if (class_grid) {
    const std::vector<int64_t> labels = class_grid_labels(mc.num_classes, fig_cols);
    const int64_t total = static_cast<int64_t>(labels.size());
    const std::vector<double> ws = guidance_list.empty() ? std::vector<double>{guidance}
                                                         : parse_list("--guidance-list", guidance_list);
    for (double w : ws) {
      auto t0 = Clock::now();
      BatchedSampleOptions o;
      o.sample = base;
      o.batch = batch;
      o.chain_n = 0;
      o.comm = &comm;
      if (!use_ddim) o.progress = progress_printer(total, t0);
      std::printf("sampling the class grid: %lld classes x %lld images, guidance w = %g (%s)\n",
                  static_cast<long long>(mc.num_classes), static_cast<long long>(fig_cols), w, how.c_str());
      std::fflush(stdout);
      SampleResult r = sample_in_batches(sampler, model_for([labels](int64_t i) { return labels[i]; }, false, w), total,
                                         image, o);
      std::ostringstream name;
      if (guidance_list.empty()) name << "class_grid.png";
      else name << "class_grid_w" << w << ".png";
      if (comm.rank() == 0) write_image_grid(prefix + name.str(), r.x0, fig_cols);
      std::printf("wrote %s%s (row k is class k, w = %g, %.1fs)\n", prefix.c_str(), name.str().c_str(), w,
                  seconds_since(t0));
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<Communicator> comm = world_communicator(&argc, &argv);  // MPI_Init in an MPI build
  return run_tool(run, argc, argv, *comm);
}

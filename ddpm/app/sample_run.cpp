#include "ddpm/app/sample_run.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "ddpm/app/checkpoint_model.h"
#include "ddpm/app/figures.h"
#include "ddpm/app/progress.h"
#include "ddpm/app/run_folder.h"
#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/data/dataset.h"
#include "ddpm/data/mnist.h"
#include "ddpm/io/gif.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"

namespace ddpm {

SampleRunFlags::SampleRunFlags(SampleRun* run)
    : Flags("sample",
            "Draw images from a checkpoint with Algorithm 2 of Ho et al. 2020 and write the figures:\n"
            "DIR/samples.png always (with a checkpoint), and chain.png, chain.gif, forward.png and\n"
            "class_grid.png when asked. Images do not depend on --batch or --threads.") {
  SampleRun& r = *run;
  add("--checkpoint", &r.checkpoint, "a ./train_mnist checkpoint (.safetensors); not needed for --forward alone");
  add("--n", &r.n, "number of images in samples.png");
  add("--batch", &r.batch, "images per sampling batch (memory vs. speed; results are the same)");
  add("--seed", &r.seed, "seed of the sampling noise (and of the forward-process noise)");
  add("--variance", &r.variance,
      "sigma_t^2: fixed_large (beta_t), fixed_small (beta-tilde_t) or learned_range; empty: learned_range for a "
      "--learned-variance checkpoint, else its train.variance");
  add("--ema", &r.use_ema, "use the EMA weights when the checkpoint has them (--no-ema: the raw weights)");
  add("--class", &r.class_label,
      "conditional models: the class of every image (0..K-1 for K classes), or 'null'; empty: image i gets class "
      "i mod K");
  add("--guidance", &r.guidance,
      "conditional models: classifier-free guidance w, eps = (1+w) eps(x,c) - w eps(x,null)");
  add("--guidance-list", &r.guidance_list,
      "with --class-grid: guidance weights like 0,0.5,2, one class_grid_w<w>.png each (same x_T for every w)");
  add_sampler_flags(*this, &r.sampler);
  add("--save-samples", &r.save_samples,
      "also write the samples to this safetensors file: \"samples\" [N, C, S, S] clamped to [-1, 1] and, for "
      "a conditional model, \"labels\" [N] (the requested class; 10 = null) for ./eval --samples");
  add("--class-grid", &r.class_grid,
      "conditional models: write class_grid.png, one row per class, --fig-cols images each");
  add("--chain", &r.chain, "write chain.png: --fig-rows samples (rows) at --fig-cols evenly spaced t from T to 0");
  add("--gif", &r.gif, "write chain.gif: the samples.png grid from x_T to x_0 in --gif-frames frames");
  add("--gif-frames", &r.gif_frames, "frames of chain.gif (evenly spaced t from T to 0)");
  add("--forward", &r.forward,
      "write forward.png: --fig-rows test images of --dataset at --fig-cols evenly spaced t from 0 to T");
  add("--fig-rows", &r.fig_rows, "rows of chain.png and forward.png");
  add("--fig-cols", &r.fig_cols, "columns (timesteps) of chain.png and forward.png; images per row of class_grid.png");
  add("--dataset", &r.dataset,
      "the images of --forward: mnist, fashion, cifar10 (test_batch.bin) or folder (its images, at the "
      "--checkpoint's size and channels)");
  add("--data", &r.data_dir, "the --dataset's folder, for --forward (empty: data/mnist, data/cifar10, ...)");
  add("--schedule", &r.schedule,
      "beta schedule for --forward without --checkpoint: linear, cosine, sigmoid, quadratic");
  add("--T", &r.T, "number of diffusion steps (1.." + std::to_string(kMaxT) + ") for --forward without --checkpoint");
  add("--threads", &r.threads, "worker threads (results do not depend on it)");
  add("--out", &r.out, "output folder");
  add("--log-every", &r.log_every, "print progress every N timesteps");
  record_given(&r.given);
}

namespace {

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
  int64_t label_of(int64_t i, int64_t classes) const { return kind == fixed ? label : i % std::max<int64_t>(classes, 1); }
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
  for (const std::string& item : split_commas(text)) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    DDPM_CHECK(!item.empty() && *end == '\0' && std::isfinite(v),
               flag << " '" << text << "': expected numbers separated by commas, like 0,0.5,2");
    out.push_back(v);
  }
  DDPM_CHECK(!out.empty(), flag << " is empty; expected numbers separated by commas, like 0,0.5,2");
  return out;
}

// Every flag checked before any work (the checkpoint's are checked as it loads). Returns
// --threads as set_num_threads takes it.
int check_sample_flags(const SampleRun& r) {
  DDPM_CHECK(r.n >= 1 && r.batch >= 1, "--n " << r.n << " and --batch " << r.batch << " must be at least 1");
  DDPM_CHECK(r.fig_rows >= 1 && r.fig_cols >= 1 && r.gif_frames >= 1 && r.log_every >= 1,
             "--fig-rows, --fig-cols, --gif-frames and --log-every must be at least 1");
  const int threads = check_threads_flag(r.threads);
  DDPM_CHECK(std::isfinite(r.guidance), "--guidance must be a finite number");
  check_sampler_flags(r.given, r.sampler);
  DDPM_CHECK(r.sampler.sampler != "ddim" || (!r.chain && !r.gif),
             "--chain and --gif draw Algorithm 2's chain at evenly spaced t; drop them or use --sampler ddpm");
  DDPM_CHECK(r.guidance_list.empty() || r.class_grid, "--guidance-list needs --class-grid");
  if (r.checkpoint.empty()) {
    DDPM_CHECK(r.forward, "--checkpoint PATH is required (only --forward works without one); see --help");
    for (const char* f : {"--chain", "--gif", "--class", "--guidance", "--class-grid", "--variance", "--n", "--sampler",
                          "--ddim-steps", "--eta", "--spacing", "--guidance-list", "--save-samples"})
      DDPM_CHECK(!r.given.count(f), f << " needs --checkpoint PATH");
  }
  return threads;
}

// The checkpoint's model (none without --checkpoint) and the schedule: the checkpoint's own
// (--schedule and --T, if given, must agree with it), else --schedule and --T.
LoadedModel load_model_and_schedule(const SampleRun& r) {
  LoadedModel m;
  if (!r.checkpoint.empty()) {
    m = load_checkpoint_model(r.checkpoint, r.use_ema, /*require_train_config=*/false);
    if (m.train) {
      DDPM_CHECK((!r.given.count("--schedule") || r.schedule == m.train->schedule) &&
                     (!r.given.count("--T") || r.T == m.train->T),
                 r.checkpoint << " was trained with the " << m.train->schedule << " schedule and T = " << m.train->T
                              << "; drop --schedule/--T (they are for checkpoints that do not record theirs)");
      return m;
    }
    DDPM_CHECK(r.given.count("--schedule") && r.given.count("--T"),
               r.checkpoint << " does not record its schedule (train.schedule, train.T); pass --schedule and --T");
  }
  check_T(r.T, "--T");  // a checkpoint's train.T was checked as it loaded
  m.schedule = make_schedule(r.schedule, r.T);
  return m;
}

// forward.png: --fig-rows test images of --dataset at --fig-cols evenly spaced t from 0 to T;
// with a checkpoint, at its model's size and channels.
void write_forward_figure(const SampleRun& r, const LoadedModel& loaded, const std::string& prefix) {
  const Clock::time_point t0 = Clock::now();
  const Schedule& schedule = loaded.schedule;
  DatasetOptions options;
  if (loaded.model) options = {loaded.model->config().image_size, static_cast<int>(loaded.model->config().in_ch)};
  DDPM_CHECK(r.dataset != "folder" || loaded.model,
             "--forward with --dataset folder needs --checkpoint: its model gives the image size and channels");
  const Dataset test = load_dataset(r.dataset, r.data_dir, options, "test");
  const int64_t rows = std::min<int64_t>(r.fig_rows, test.size());
  Tensor x0 = slice_batch(test.images, 0, rows);  // [rows, C, S, S]
  std::vector<int64_t> t = evenly_spaced_t(0, schedule.T, r.fig_cols);
  Tensor fig = forward_figure(schedule, x0, t, static_cast<uint64_t>(r.seed));
  write_image_grid(prefix + "forward.png", fig, static_cast<int64_t>(t.size()));
  std::printf("wrote %sforward.png (%lld test images of %s under the %s schedule, T = %lld, at t = %s; %.1fs)\n", prefix.c_str(),
              static_cast<long long>(rows), dataset_title(r.dataset, r.data_dir).c_str(), schedule.name.c_str(),
              static_cast<long long>(schedule.T), join_t(t).c_str(), seconds_since(t0));
  std::fflush(stdout);
}

// What every sampled figure of one run shares.
struct Drawing {
  const SampleRun& run;
  const LoadedModel& loaded;
  SigmaChoice sigma;
  ClassChoice choice;
  Sampler sampler;
  std::string how;     // describe_sampler
  std::string prefix;  // "<out>/"
  Communicator& comm;  // the MPI ranks that share the images; rank 0 writes the files
  bool conditional() const { return loaded.model->config().num_classes > 0; }
  int64_t classes() const { return loaded.model->config().num_classes; }
  Shape image() const {
    const UNetConfig& mc = loaded.model->config();
    return {mc.in_ch, mc.image_size, mc.image_size};
  }
  // Image i gets class label_of(i) (conditional models only; none: the null class), guided with w.
  BatchModelFn model_for(std::function<int64_t(int64_t)> label_of, double w) const {
    return unet_batch_model(*loaded.model, loaded.schedule, loaded.predict, sigma, label_of, w);
  }
  // The batches of `total` images, with Algorithm 2's progress line (DDIM prints none).
  BatchedSampleOptions batches(int64_t total, Clock::time_point t0) const {
    BatchedSampleOptions o;
    o.sample.clip_x0 = run.sampler.clip_x0;
    o.batch = run.batch;
    o.comm = &comm;
    if (run.sampler.sampler != "ddim") o.progress = sampling_progress(total, loaded.schedule.T, run.log_every, t0);
    return o;
  }
};

void print_model_line(const Drawing& d) {
  const SampleRun& r = d.run;
  UNet& model = *d.loaded.model;  // num_parameters() is not const
  std::printf("%s: model %s (%lld parameters, %s weights, predicts %s), %s schedule T = %lld, %s, seed %lld, "
              "%d threads\n",
              r.checkpoint.c_str(), model.config().name.c_str(), static_cast<long long>(model.num_parameters()),
              d.loaded.ema ? "EMA" : "raw", target_name(d.loaded.predict), d.loaded.schedule.name.c_str(),
              static_cast<long long>(d.loaded.schedule.T), d.how.c_str(), static_cast<long long>(r.seed), num_threads());
  if (d.conditional()) {
    std::ostringstream os;
    if (d.choice.kind == ClassChoice::null) os << "null class (unconditional)";
    else if (d.choice.kind == ClassChoice::fixed) os << "class " << d.choice.label << ", guidance w = " << r.guidance;
    else os << "image i has class i mod " << d.classes() << ", guidance w = " << r.guidance;
    std::printf("conditional model: %s\n", os.str().c_str());
  }
  std::fflush(stdout);
}

// --save-samples: "samples" x0 clamped to [-1, 1] as a PNG would be, and for a conditional
// model "labels", the requested class of each image (num_classes: the null class).
void save_sample_file(const Drawing& d, const Tensor& x0) {
  const SampleRun& r = d.run;
  Tensor x = x0.clone();  // [n, C, H, W]
  for (int64_t j = 0; j < x.numel(); j++) x[j] = std::min(1.0f, std::max(-1.0f, x[j]));
  NamedTensors tensors = {{"samples", x}};
  if (d.conditional()) {
    Tensor labels({r.n});
    for (int64_t i = 0; i < r.n; i++)
      labels[i] = static_cast<float>(d.choice.kind == ClassChoice::null ? d.classes() : d.choice.label_of(i, d.classes()));
    tensors.push_back({"labels", labels});
  }
  const bool guided = d.conditional() && d.choice.kind != ClassChoice::null;
  save_safetensors(r.save_samples, tensors,
                   {{"sampler", d.how}, {"checkpoint", r.checkpoint}, {"guidance", guided ? std::to_string(r.guidance) : "0"}});
  std::printf("wrote %s (\"samples\"%s)\n", r.save_samples.c_str(), d.conditional() ? " and \"labels\"" : "");
}

// The entries of r's chain at the t in `ts` (r.kept_t is descending and unique).
SampleResult kept_entries(const SampleResult& r, const std::vector<int64_t>& ts) {
  SampleResult sub;
  for (int64_t t : ts) {
    auto it = std::find(r.kept_t.begin(), r.kept_t.end(), t);
    DDPM_CHECK(it != r.kept_t.end(), "sample: x_" << t << " was not kept");
    sub.kept_t.push_back(t);
    sub.chain.push_back(r.chain[static_cast<size_t>(it - r.kept_t.begin())]);
  }
  return sub;
}

// chain.gif: the samples.png grid (`cols` columns) at each t of `gif_t`, from x_T to x_0.
void write_chain_gif(const Drawing& d, const SampleResult& r, const std::vector<int64_t>& gif_t, int64_t cols) {
  SampleResult g = kept_entries(r, gif_t);
  std::vector<std::vector<uint8_t>> frames;
  std::vector<int> delays;
  Image first;
  for (size_t k = 0; k < g.chain.size(); k++) {
    Image img = image_grid(g.chain[k], cols);
    if (k == 0) first = img;
    // RGB on the GIF's fixed 6x6x6 color cube (gif.h)
    frames.push_back(img.channels == 3 ? gif_cube_frame(img.pixels.data(), img.pixels.size() / 3) : std::move(img.pixels));
    delays.push_back(k + 1 == g.chain.size() ? 300 : 10);  // 1/100 s; hold the result for 3 s
  }
  write_gif(d.prefix + "chain.gif", first.width, first.height, frames, delays, 0,
            first.channels == 3 ? GifPalette::cube : GifPalette::gray);
  std::printf("wrote %schain.gif (%zu frames, t = %lld down to 0)\n", d.prefix.c_str(), frames.size(),
              static_cast<long long>(d.loaded.schedule.T));
}

// samples.png (--n images), and from the same run the --save-samples file, chain.png and chain.gif.
void write_samples(const Drawing& d) {
  const SampleRun& r = d.run;
  const Clock::time_point t0 = Clock::now();
  BatchedSampleOptions o = d.batches(r.n, t0);
  const std::vector<int64_t> chain_t = evenly_spaced_t(d.loaded.schedule.T, 0, r.fig_cols);
  const std::vector<int64_t> gif_t = evenly_spaced_t(d.loaded.schedule.T, 0, r.gif_frames);
  if (r.chain) o.sample.keep_t.insert(o.sample.keep_t.end(), chain_t.begin(), chain_t.end());
  if (r.gif) o.sample.keep_t.insert(o.sample.keep_t.end(), gif_t.begin(), gif_t.end());
  o.chain_n = r.gif ? r.n : r.chain ? r.fig_rows : 0;
  const ClassChoice choice = d.choice;
  const int64_t classes = d.classes();
  std::function<int64_t(int64_t)> label_of;  // none: the null class
  if (choice.kind != ClassChoice::null) label_of = [choice, classes](int64_t i) { return choice.label_of(i, classes); };
  std::printf("sampling %lld images in batches of %lld (%s)\n", static_cast<long long>(r.n),
              static_cast<long long>(r.batch), d.how.c_str());
  std::fflush(stdout);
  const SampleResult s = sample_in_batches(d.sampler, d.model_for(label_of, r.guidance), r.n, d.image(), o);
  if (d.comm.rank() != 0) return;
  const int64_t cols = grid_columns(r.n);
  write_image_grid(d.prefix + "samples.png", s.x0, cols);
  std::printf("wrote %ssamples.png (%lld images, %.1fs)\n", d.prefix.c_str(), static_cast<long long>(r.n),
              seconds_since(t0));
  if (!r.save_samples.empty()) save_sample_file(d, s.x0);
  if (r.chain) {
    const int64_t rows = std::min(r.fig_rows, r.n);
    write_image_grid(d.prefix + "chain.png", chain_figure(kept_entries(s, chain_t), rows),
                     static_cast<int64_t>(chain_t.size()));
    std::printf("wrote %schain.png (%lld samples, x_t at t = %s)\n", d.prefix.c_str(), static_cast<long long>(rows),
                join_t(chain_t).c_str());
  }
  if (r.gif) write_chain_gif(d, s, gif_t, cols);
  std::fflush(stdout);
}

// class_grid.png, or class_grid_w<w>.png for each weight of --guidance-list: row k is class
// k, --fig-cols images each, the same x_T for every w.
void write_class_grids(const Drawing& d) {
  const SampleRun& r = d.run;
  const std::vector<int64_t> labels = class_grid_labels(d.classes(), r.fig_cols);
  const int64_t total = static_cast<int64_t>(labels.size());
  const std::vector<double> ws =
      r.guidance_list.empty() ? std::vector<double>{r.guidance} : parse_list("--guidance-list", r.guidance_list);
  for (double w : ws) {
    const Clock::time_point t0 = Clock::now();
    BatchedSampleOptions o = d.batches(total, t0);
    o.chain_n = 0;
    std::printf("sampling the class grid: %lld classes x %lld images, guidance w = %g (%s)\n",
                static_cast<long long>(d.classes()), static_cast<long long>(r.fig_cols), w, d.how.c_str());
    std::fflush(stdout);
    const SampleResult s =
        sample_in_batches(d.sampler, d.model_for([labels](int64_t i) { return labels[i]; }, w), total, d.image(), o);
    std::ostringstream name;
    if (r.guidance_list.empty()) name << "class_grid.png";
    else name << "class_grid_w" << w << ".png";
    if (d.comm.rank() == 0) write_image_grid(d.prefix + name.str(), s.x0, r.fig_cols);
    std::printf("wrote %s%s (row k is class k, w = %g, %.1fs)\n", d.prefix.c_str(), name.str().c_str(), w,
                seconds_since(t0));
    std::fflush(stdout);
  }
}

}  // namespace

int sample_run(const SampleRun& r) {
  SingleProcess one;
  return sample_run(r, one);
}

int sample_run(const SampleRun& r, Communicator& comm) {
  set_num_threads(check_sample_flags(r));
  const LoadedModel loaded = load_model_and_schedule(r);
  ensure_writable_dir(r.out);  // created if absent; a file or an unwritable folder is refused here
  const std::string prefix = r.out + "/";
  if (r.forward && comm.rank() == 0) write_forward_figure(r, loaded, prefix);
  if (!loaded.model) return 0;

  const UNetConfig& mc = loaded.model->config();
  if (mc.num_classes == 0)
    for (const char* f : {"--class", "--guidance", "--class-grid"})
      DDPM_CHECK(!r.given.count(f), r.checkpoint << " is an unconditional model (trained without --conditional); " << f
                                                 << " needs a class-conditional checkpoint");
  const SigmaChoice sigma = checkpoint_sigma(mc, loaded.metadata, r.variance);
  const ClassChoice choice = mc.num_classes > 0 ? parse_class(r.class_label, mc.num_classes) : ClassChoice{};
  const Drawing d{r,
                  loaded,
                  sigma,
                  choice,
                  make_sampler(loaded.schedule, static_cast<uint64_t>(r.seed), r.sampler),
                  describe_sampler(r.sampler, loaded.schedule.T, sigma),
                  prefix,
                  comm};
  print_model_line(d);
  write_samples(d);
  if (r.class_grid) write_class_grids(d);
  return 0;
}

}  // namespace ddpm

// beyond: the "Beyond Algorithm 2" options from a checkpoint of ./train_mnist (README section
// "Beyond Algorithm 2"). Three modes:
//   --mode class-grid  one PNG per guidance weight w: one row per digit 0-9 (a --conditional model)
//   --mode samples     --n images with Algorithm 2 or DDIM (--sampler ddim --steps S --spacing
//                      --eta), optionally of --class K with --guidance w; a PNG grid and a
//                      safetensors file ("samples" [N, 1, 28, 28] in [-1, 1], "labels" [N])
//   --mode bpd         the variational bound in bits/dim on --n MNIST test images (learned_range
//                      for a --learned-variance model, else --variance)
// The prediction target (--predict at training) is read from the checkpoint.
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/check.h"
#include "ddpm/cli.h"
#include "ddpm/data/mnist.h"
#include "ddpm/ddim.h"
#include "ddpm/guidance.h"
#include "ddpm/io/png.h"
#include "ddpm/io/safetensors.h"
#include "ddpm/parallel.h"
#include "ddpm/targets.h"
#include "ddpm/train.h"

using namespace ddpm;

namespace {

std::vector<double> parse_list(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stod(item, &used));
      if (used != item.size()) throw 0;
    } catch (...) {
      DDPM_FAIL("--guidance '" << text << "': expected numbers separated by commas, like 0,0.5,2");
    }
  }
  DDPM_CHECK(!out.empty(), "--guidance is empty");
  return out;
}

int run(int argc, char** argv) {
  std::string ckpt, mode = "samples", out = "out", sampler = "ddpm", spacing = "trailing", guidance = "0,0.5,2";
  std::string variance = "fixed_large", data_dir = "data/mnist";
  int64_t n = 64, steps = 50, cls = -1, per_row = 8, stride = 1, seed = 0;
  int64_t threads = std::max(1u, std::thread::hardware_concurrency());
  double eta = 0.0;
  bool clip = false, raw = false;
  Flags flags("beyond", "Class grids with guidance, DDIM sampling, and bits/dim from a ./train_mnist checkpoint.");
  flags.add("--ckpt", &ckpt, "checkpoint (ckpt-*.safetensors); EMA weights are used");
  flags.add("--mode", &mode, "class-grid, samples or bpd");
  flags.add("--out", &out, "class-grid: output folder; samples: output path without extension");
  flags.add("--sampler", &sampler, "ddpm (Algorithm 2) or ddim");
  flags.add("--steps", &steps, "DDIM: number of respaced steps (10, 20, 50, 100, ... up to T)");
  flags.add("--spacing", &spacing, "DDIM: linspace (both ends) or trailing (ends at T)");
  flags.add("--eta", &eta, "DDIM: 0 deterministic, 1 DDPM's beta-tilde variance");
  flags.add("--guidance", &guidance, "guidance weight(s) w; class-grid takes a list, like 0,0.5,2");
  flags.add("--class", &cls, "samples: digit 0-9 for a conditional model (-1: null label, unguided)");
  flags.add("--per-row", &per_row, "class-grid: images per digit");
  flags.add("--n", &n, "samples: number of images; bpd: number of test images");
  flags.add("--variance", &variance, "Algorithm 2 / bpd: fixed_large or fixed_small (ignored with a learned variance)");
  flags.add("--clip-x0", &clip, "clip the predicted x0 to [-1, 1] while sampling (off: Algorithm 2 as written)");
  flags.add("--stride", &stride, "bpd: evaluate every stride-th KL term (1: all T, exact bound)");
  flags.add("--data", &data_dir, "bpd: MNIST folder");
  flags.add("--raw", &raw, "samples: also keep values outside [-1, 1] in the safetensors file (default clamps)");
  flags.add("--seed", &seed, "seed of x_T and the sampler's noise");
  flags.add("--threads", &threads, "worker threads (results do not depend on it)");
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  DDPM_CHECK(!ckpt.empty(), "--ckpt is required (a ckpt-*.safetensors from ./train_mnist)");
  set_num_threads(static_cast<int>(threads));
  std::map<std::string, std::string> meta;
  std::unique_ptr<UNet> model = load_model(ckpt, /*use_ema=*/true, &meta);
  const TrainConfig tc = TrainConfig::from_metadata(meta);
  const Schedule sch = make_schedule(tc.schedule, tc.T);
  const UNetConfig& c = model->config();
  const PredictionTarget predict = prediction_target(meta);
  ReverseOptions reverse;
  reverse.variance = c.learned_variance ? VarianceType::learned_range : parse_variance(variance);
  reverse.clip_x0 = clip;
  DdimOptions ddim;
  ddim.steps = steps;
  ddim.spacing = parse_spacing(spacing);
  ddim.eta = eta;
  ddim.clip_x0 = clip;
  DDPM_CHECK(sampler == "ddpm" || sampler == "ddim", "--sampler '" << sampler << "': use ddpm or ddim");
  std::ostringstream how_os;
  if (sampler == "ddim") how_os << "DDIM " << steps << " steps (" << spacing << ", eta " << eta << ")";
  else how_os << "Algorithm 2, " << tc.T << " steps";
  const std::string how = how_os.str();

  if (mode == "class-grid") {
    for (double w : parse_list(guidance)) {
      ClassGridOptions o;
      o.per_row = per_row;
      o.guidance = w;
      o.seed = static_cast<uint64_t>(seed);
      o.predict = predict;
      o.ddim = sampler == "ddim";
      o.ddim_options = ddim;
      o.reverse = reverse;
      Tensor grid = sample_class_grid(*model, sch, o);
      std::ostringstream name;
      name << out << "/class_grid_w" << w << ".png";
      write_image_grid(name.str(), grid, per_row);
      std::printf("wrote %s (rows: digits 0-9, w = %g, %s)\n", name.str().c_str(), w, how.c_str());
      std::fflush(stdout);
    }
    return 0;
  }
  if (mode == "samples") {
    const std::vector<double> ws = parse_list(guidance);
    DDPM_CHECK(ws.size() == 1 || cls < 0, "--mode samples takes one --guidance value");
    std::vector<int64_t> labels(n, cls < 0 ? c.num_classes : cls);
    DDPM_CHECK(cls < 0 || c.num_classes > 0, "--class needs a model trained with --conditional");
    DDPM_CHECK(cls < c.num_classes || c.num_classes == 0, "--class " << cls << " must be in 0.." << c.num_classes - 1);
    EpsFn eps = unet_eps_fn(*model, c.num_classes > 0 ? &labels : nullptr, cls >= 0 ? ws[0] : 0.0);
    eps = as_eps_fn(sch, eps, predict);
    const Shape shape{n, c.in_ch, c.image_size, c.image_size};
    SampleOptions so;
    so.reverse = reverse;
    Tensor x = sampler == "ddim" ? ddim_sample(sch, eps, shape, seed, ddim).x0 : sample(sch, eps, shape, seed, so).x0;
    if (!raw)
      for (int64_t j = 0; j < x.numel(); j++) x[j] = std::min(1.0f, std::max(-1.0f, x[j]));
    Tensor lab({n});
    for (int64_t i = 0; i < n; i++) lab[i] = static_cast<float>(labels[i]);
    save_safetensors(out + ".safetensors", {{"samples", x}, {"labels", lab}},
                     {{"sampler", how}, {"checkpoint", ckpt}, {"guidance", cls >= 0 ? std::to_string(ws[0]) : "0"}});
    write_image_grid(out + ".png", x, std::max<int64_t>(1, std::lround(std::sqrt(static_cast<double>(n)))));
    std::printf("wrote %s.safetensors and %s.png (%lld images, %s)\n", out.c_str(), out.c_str(),
                static_cast<long long>(n), how.c_str());
    return 0;
  }
  if (mode == "bpd") {
    DDPM_CHECK(c.num_classes == 0, "--mode bpd: evaluate an unconditional model");
    MnistSplit test = load_mnist(data_dir, "test");
    DDPM_CHECK(n >= 1 && n <= test.images.size(0), "--n " << n << " must be in 1.." << test.images.size(0));
    const int64_t D = test.images.numel() / test.images.size(0);
    Tensor x0 = Tensor::from({n, 1, 28, 28}, std::vector<float>(test.images.data(), test.images.data() + n * D));
    VlbOptions vo;
    vo.reverse = reverse;
    vo.stride = stride;
    VlbResult r = vlb_terms(sch, as_eps_fn(sch, unet_eps_fn(*model), predict), x0, static_cast<uint64_t>(seed), vo);
    double prior = 0, dec = 0;
    for (int64_t i = 0; i < n; i++) prior += r.prior_nats[i] / n, dec += r.decoder_nats[i] / n;
    std::printf("%s on %lld MNIST test images, sigma^2 %s: %.4f bits/dim (%.1f nats; L_T %.3f nats, L_0 %.1f nats)\n",
                r.name.c_str(), static_cast<long long>(n), variance_name(reverse.variance), r.mean_bpd, r.mean_nats,
                prior, dec);
    return 0;
  }
  DDPM_FAIL("--mode '" << mode << "': use class-grid, samples or bpd");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

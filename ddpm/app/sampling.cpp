#include "ddpm/app/sampling.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>

#include "ddpm/app/figures.h"
#include "ddpm/core/check.h"
#include "ddpm/extensions/guidance.h"
#include "ddpm/extensions/learned_variance.h"
#include "ddpm/model/unet_inference.h"

namespace ddpm {

std::string sigma_name(const SigmaChoice& sigma) { return sigma.learned ? "learned_range" : variance_name(sigma.fixed); }

SigmaChoice checkpoint_sigma(const UNetConfig& config, const std::map<std::string, std::string>& metadata,
                             const std::string& requested) {
  SigmaChoice c;
  if (requested == "learned_range") {
    DDPM_CHECK(config.learned_variance, "--variance learned_range: the model '" << config.name
                                            << "' has no learned variance (train it with --learned-variance)");
    c.learned = true;
  } else if (!requested.empty()) {
    c.fixed = parse_variance(requested);
  } else if (config.learned_variance) {
    c.learned = true;
  } else {
    auto it = metadata.find("train.variance");
    if (it != metadata.end()) c.fixed = parse_variance(it->second);
  }
  return c;
}

PredictionTarget prediction_target(const std::map<std::string, std::string>& metadata) {
  auto it = metadata.find("train.predict");
  return it == metadata.end() ? PredictionTarget::eps : parse_target(it->second);
}

EpsFn unet_network(UNet& model, const std::vector<int64_t>* labels, double guidance) {
  // The tape-free pass (unet_inference.h): model.forward in eval mode, rounded differently
  // only in the Upsample (a few float ulps). It copies the weights now: a network made before
  // the weights change does not see the change.
  auto inference = std::make_shared<UNetInference>(model);
  return [inference, labels, guidance](const Tensor& x_t, const std::vector<int64_t>& t) -> Tensor {
    const UNetConfig& c = inference->config();
    const int64_t N = x_t.size(0);
    auto run = [&](const std::vector<int64_t>* ls) { return inference->forward(x_t, t, ls); };
    if (c.num_classes == 0) {
      DDPM_CHECK(labels == nullptr, "sample: class labels given to an unconditional model");
      return run(nullptr);
    }
    std::vector<int64_t> null_labels(N, c.num_classes);
    const std::vector<int64_t>& cond = labels ? *labels : null_labels;
    DDPM_CHECK(static_cast<int64_t>(cond.size()) == N, "sample: " << cond.size() << " labels for " << N << " images");
    Tensor out = run(&cond);
    if (guidance == 0.0 || !labels) return out;
    // Classifier-free guidance on the prediction channels [0, C) (guidance.h); the r channels
    // of a learned variance stay the conditional pass's.
    out = guided_eps(out, run(&null_labels), guidance, c.in_ch);
    return out;
  };
}

ModelFn unet_model(UNet& model, const Schedule& s, PredictionTarget predict, const SigmaChoice& sigma,
                   const std::vector<int64_t>* labels, double guidance) {
  const EpsFn network = unet_network(model, labels, guidance);
  if (sigma.learned) {
    DDPM_CHECK(model.config().learned_variance,
               "sample: a learned Sigma needs a learned-variance model; '" << model.config().name << "' has none");
    return learned_variance_model(s, network, predict);
  }
  if (!model.config().learned_variance) return fixed_variance_model(s, as_eps_fn(s, network, predict), sigma.fixed);
  // A learned-variance model sampled with a fixed Sigma: its prediction channels only.
  const EpsFn prediction = [network](const Tensor& x_t, const std::vector<int64_t>& t) {
    return split_learned_output(network(x_t, t)).prediction;
  };
  return fixed_variance_model(s, as_eps_fn(s, prediction, predict), sigma.fixed);
}

ModelFn unet_model(UNet& model, const Schedule& s) { return unet_model(model, s, PredictionTarget::eps, SigmaChoice{}); }

BatchModelFn unet_batch_model(UNet& model, const Schedule& s, PredictionTarget predict, const SigmaChoice& sigma,
                              std::function<int64_t(int64_t)> label_of, double guidance) {
  UNet* m = &model;
  const Schedule* schedule = &s;
  return [m, schedule, predict, sigma, label_of, guidance](int64_t first, int64_t count) -> ModelFn {
    if (m->config().num_classes == 0 || !label_of) return unet_model(*m, *schedule, predict, sigma);
    auto labels = std::make_shared<std::vector<int64_t>>();
    for (int64_t i = 0; i < count; i++) labels->push_back(label_of(first + i));
    ModelFn fn = unet_model(*m, *schedule, predict, sigma, labels.get(), guidance);
    return [labels, fn](const Tensor& x_t, const std::vector<int64_t>& t) { return fn(x_t, t); };  // keeps labels alive
  };
}

Sampler ddpm_sampler(const Schedule& s, uint64_t seed) {
  return [&s, seed](const ModelFn& model, const Shape& shape, const SampleOptions& options) {
    return sample(s, model, shape, seed, options);
  };
}

Sampler ddim_sampler(const Schedule& s, uint64_t seed, const DdimOptions& ddim) {
  return [&s, seed, ddim](const ModelFn& model, const Shape& shape, const SampleOptions& options) {
    DdimOptions o = ddim;
    o.keep_t = options.keep_t;
    o.first_index = options.first_index;
    auto eps_theta = [&model](const Tensor& x_t, const std::vector<int64_t>& t) { return model(x_t, t).eps_theta; };
    return ddim_sample(s, eps_theta, shape, seed, o);
  };
}

void add_sampler_flags(Flags& flags, SamplerChoice* choice) {
  flags.add("--sampler", &choice->sampler, "ddpm (Algorithm 2) or ddim (Song et al. 2021)");
  flags.add("--ddim-steps", &choice->ddim_steps, "with --sampler ddim: S, the number of respaced steps (1..T)");
  flags.add("--eta", &choice->eta, "with --sampler ddim: 0 deterministic, 1 DDPM's beta-tilde variance");
  flags.add("--spacing", &choice->spacing, "with --sampler ddim: linspace (contains t = 1 and T) or trailing (ends at T)");
  flags.add("--clip-x0", &choice->clip_x0, "clip the predicted x_0 to [-1, 1] at each step (a departure from Algorithm 2)");
}

void check_sampler_flags(const std::set<std::string>& given, const SamplerChoice& choice) {
  DDPM_CHECK(choice.sampler == "ddpm" || choice.sampler == "ddim",
             "--sampler '" << choice.sampler << "': use ddpm or ddim");
  if (choice.sampler != "ddim")
    for (const char* f : {"--ddim-steps", "--eta", "--spacing"}) DDPM_CHECK(!given.count(f), f << " needs --sampler ddim");
  parse_spacing(choice.spacing);  // throws on an unknown name
  DDPM_CHECK(std::isfinite(choice.eta) && choice.eta >= 0, "--eta " << choice.eta << " must be a finite number >= 0");
}

Sampler make_sampler(const Schedule& s, uint64_t seed, const SamplerChoice& choice) {
  if (choice.sampler != "ddim") return ddpm_sampler(s, seed);
  DdimOptions ddim;
  ddim.steps = choice.ddim_steps;
  ddim.spacing = parse_spacing(choice.spacing);
  ddim.eta = choice.eta;
  ddim.clip_x0 = choice.clip_x0;
  respace_timesteps(s.T, ddim.steps, ddim.spacing);  // checks 1 <= S <= T before any work
  return ddim_sampler(s, seed, ddim);
}

std::string describe_sampler(const SamplerChoice& choice, int64_t T, const SigmaChoice& sigma) {
  std::ostringstream os;
  if (choice.sampler == "ddim")
    os << "DDIM, " << choice.ddim_steps << " steps (" << choice.spacing << ", eta " << choice.eta << ")";
  else
    os << "Algorithm 2, " << T << " steps, " << sigma_name(sigma);
  if (choice.clip_x0) os << ", x_0 clipped";
  return os.str();
}

Tensor slice_batch(const Tensor& x, int64_t first, int64_t count) { return rows(x, first, count); }

// Writes src [count, ...] into dst [N, ...] at image `first`.
static void put_batch(Tensor& dst, const Tensor& src, int64_t first) {
  const int64_t D = dst.numel() / dst.size(0);
  std::copy(src.data(), src.data() + src.numel(), dst.data() + first * D);
}

namespace {

// Every rank's rows of x [N, ...] into every rank's x: rank r holds rows_of[r] rows from
// `first` (its own), and the ranks' rows follow one another from row 0.
void gather_rows(Communicator& comm, Tensor& x, int64_t first, const std::vector<int64_t>& rows_of) {
  const int64_t D = x.numel() / x.size(0);
  std::vector<int64_t> bytes(rows_of.size());
  for (size_t r = 0; r < rows_of.size(); r++) bytes[r] = rows_of[r] * D * static_cast<int64_t>(sizeof(float));
  const Tensor mine = rows(x, first, rows_of[static_cast<size_t>(comm.rank())]);
  Tensor all(x.shape());
  comm.allgatherv(mine.data(), all.data(), bytes);
  x = all;
}

}  // namespace

SampleResult sample_in_batches(const Sampler& sampler, const BatchModelFn& model, int64_t n, const Shape& image,
                               const BatchedSampleOptions& options) {
  DDPM_CHECK(n >= 1 && options.batch >= 1,
             "sample_in_batches: n = " << n << " images in batches of " << options.batch << "; both must be >= 1");
  DDPM_CHECK(image.size() == 3, "sample_in_batches: image shape " << to_string(image) << " must be [C, H, W]");
  const int64_t chain_n = options.chain_n < 0 ? n : std::min(n, options.chain_n);
  const int R = options.comm ? options.comm->size() : 1, me = options.comm ? options.comm->rank() : 0;
  const Share mine = share_of(n, R, me);  // this rank's images
  Shape all{n, image[0], image[1], image[2]};
  SampleResult r;
  r.x0 = Tensor(all);
  for (int64_t first = mine.first; first < mine.first + mine.count; first += options.batch) {
    const int64_t count = std::min(options.batch, mine.first + mine.count - first);
    SampleOptions o = options.sample;
    o.first_index = first;                         // keys the noise of image i by first + i
    if (first >= chain_n) o.keep_t.clear();        // no chain wanted past chain_n
    if (options.progress && me == 0) {
      auto progress = options.progress;
      o.progress = [progress, first, count](int64_t t) { progress(first, count, t); };
    }
    SampleResult b = sampler(model(first, count), {count, image[0], image[1], image[2]}, o);
    put_batch(r.x0, b.x0, first);
    if (first < chain_n && r.chain.empty() && !b.chain.empty()) {
      r.kept_t = b.kept_t;
      Shape chain_shape{chain_n, image[0], image[1], image[2]};
      for (size_t k = 0; k < b.chain.size(); k++) r.chain.emplace_back(chain_shape);
    }
    DDPM_CHECK(first >= chain_n || b.kept_t == r.kept_t, "sample_in_batches: the sampler kept other t in batch at " << first);
    const int64_t keep = std::min(count, chain_n - first);
    for (size_t k = 0; keep > 0 && k < b.chain.size(); k++) put_batch(r.chain[k], slice_batch(b.chain[k], 0, keep), first);
  }
  if (R == 1) return r;

  // Every rank's images to every rank: x0, then the chain's rows below chain_n.
  Communicator& comm = *options.comm;
  std::vector<int64_t> images_of(static_cast<size_t>(R)), chain_of(static_cast<size_t>(R));
  int owner = -1;  // the rank that drew image 0, whose kept t every rank takes
  for (int j = 0; j < R; j++) {
    const Share s = share_of(n, R, j);
    images_of[j] = s.count;
    chain_of[j] = std::max<int64_t>(0, std::min(chain_n, s.first + s.count) - s.first);
    if (owner < 0 && s.count > 0) owner = j;
  }
  gather_rows(comm, r.x0, mine.first, images_of);
  if (chain_n == 0) return r;
  uint64_t kept = r.kept_t.size();
  comm.broadcast(&kept, sizeof kept, owner);
  r.kept_t.resize(kept);
  comm.broadcast(r.kept_t.data(), static_cast<int64_t>(kept * sizeof(int64_t)), owner);
  if (r.chain.empty())
    for (uint64_t k = 0; k < kept; k++) r.chain.emplace_back(Shape{chain_n, image[0], image[1], image[2]});
  for (Tensor& c : r.chain) gather_rows(comm, c, std::min(mine.first, chain_n), chain_of);
  return r;
}

Tensor sample_class_grid(UNet& model, const Schedule& s, const ClassGridOptions& options) {
  const UNetConfig& c = model.config();
  DDPM_CHECK(c.num_classes > 0, "sample_class_grid: model '" << c.name << "' is not class-conditional "
                                                             << "(train it with --conditional)");
  const std::vector<int64_t> labels = class_grid_labels(c.num_classes, options.per_row);
  const ModelFn fn = unet_model(model, s, options.predict, options.sigma, &labels, options.guidance);
  const Shape shape{static_cast<int64_t>(labels.size()), c.in_ch, c.image_size, c.image_size};
  SampleOptions so;
  so.clip_x0 = options.sampler.clip_x0;
  return make_sampler(s, options.seed, options.sampler)(fn, shape, so).x0;
}

}  // namespace ddpm

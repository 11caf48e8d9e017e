#include "ddpm/app/figures.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "ddpm/core/check.h"

namespace ddpm {

std::vector<int64_t> evenly_spaced_t(int64_t from, int64_t to, int64_t count) {
  DDPM_CHECK(count >= 1, "evenly_spaced_t: count = " << count << " must be at least 1");
  const int64_t span = to - from;
  count = std::min<int64_t>(count, std::llabs(span) + 1);
  std::vector<int64_t> t;
  for (int64_t k = 0; k < count; k++) {
    // from + round(k * span / (count - 1)), exact in double for any t we use
    const double step = count == 1 ? 0.0 : static_cast<double>(k) * static_cast<double>(span) / (count - 1);
    t.push_back(from + static_cast<int64_t>(std::llround(step)));
  }
  return t;
}

Sampler ddpm_sampler(const Schedule& s, uint64_t seed) {
  return [&s, seed](const EpsFn& model, const Shape& shape, const SampleOptions& options) {
    return sample(s, model, shape, seed, options);
  };
}

Sampler ddim_sampler(const Schedule& s, uint64_t seed, const DdimOptions& ddim) {
  return [&s, seed, ddim](const EpsFn& model, const Shape& shape, const SampleOptions& options) {
    DdimOptions o = ddim;
    o.keep_t = options.keep_t;
    o.first_index = options.first_index;
    return ddim_sample(s, model, shape, seed, o);
  };
}

void add_sampler_flags(Flags& flags, SamplerChoice* choice) {
  flags.add("--sampler", &choice->sampler, "ddpm (Algorithm 2) or ddim (Song et al. 2021)");
  flags.add("--ddim-steps", &choice->ddim_steps, "with --sampler ddim: S, the number of respaced steps (1..T)");
  flags.add("--eta", &choice->eta, "with --sampler ddim: 0 deterministic, 1 DDPM's beta-tilde variance");
  flags.add("--spacing", &choice->spacing, "with --sampler ddim: linspace (contains t = 1 and T) or trailing (ends at T)");
  flags.add("--clip-x0", &choice->clip_x0, "clip the predicted x_0 to [-1, 1] at each step (a departure from Algorithm 2)");
}

void check_sampler_flags(const Flags& flags, const SamplerChoice& choice) {
  DDPM_CHECK(choice.sampler == "ddpm" || choice.sampler == "ddim",
             "--sampler '" << choice.sampler << "': use ddpm or ddim");
  if (choice.sampler != "ddim")
    for (const char* f : {"--ddim-steps", "--eta", "--spacing"}) DDPM_CHECK(!flags.given(f), f << " needs --sampler ddim");
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

std::string describe_sampler(const SamplerChoice& choice, int64_t T, VarianceType variance) {
  std::ostringstream os;
  if (choice.sampler == "ddim")
    os << "DDIM, " << choice.ddim_steps << " steps (" << choice.spacing << ", eta " << choice.eta << ")";
  else
    os << "Algorithm 2, " << T << " steps, " << variance_name(variance);
  if (choice.clip_x0) os << ", x_0 clipped";
  return os.str();
}

Tensor slice_batch(const Tensor& x, int64_t first, int64_t count) {
  DDPM_CHECK(x.defined() && x.dim() >= 1 && first >= 0 && count >= 0 && first + count <= x.size(0),
             "slice_batch: images [" << first << ", " << first + count << ") of a tensor " << x.shape_str());
  Shape shape = x.shape();
  const int64_t D = x.size(0) > 0 ? x.numel() / x.size(0) : 0;
  shape[0] = count;
  Tensor out(shape);
  std::copy(x.data() + first * D, x.data() + (first + count) * D, out.data());
  return out;
}

// Writes src [count, ...] into dst [N, ...] at image `first`.
static void put_batch(Tensor& dst, const Tensor& src, int64_t first) {
  const int64_t D = dst.numel() / dst.size(0);
  std::copy(src.data(), src.data() + src.numel(), dst.data() + first * D);
}

SampleResult sample_in_batches(const Sampler& sampler, const BatchEpsFn& model, int64_t n, const Shape& image,
                               const BatchedSampleOptions& options) {
  DDPM_CHECK(n >= 1 && options.batch >= 1,
             "sample_in_batches: n = " << n << " images in batches of " << options.batch << "; both must be >= 1");
  DDPM_CHECK(image.size() == 3, "sample_in_batches: image shape " << to_string(image) << " must be [C, H, W]");
  const int64_t chain_n = options.chain_n < 0 ? n : std::min(n, options.chain_n);
  Shape all{n, image[0], image[1], image[2]};
  SampleResult r;
  r.x0 = Tensor(all);
  for (int64_t first = 0; first < n; first += options.batch) {
    const int64_t count = std::min(options.batch, n - first);
    SampleOptions o = options.sample;
    o.first_index = first;                         // keys the noise of image i by first + i
    if (first >= chain_n) o.keep_t.clear();        // no chain wanted past chain_n
    if (options.progress) {
      auto progress = options.progress;
      o.progress = [progress, first, count](int64_t t) { progress(first, count, t); };
    }
    SampleResult b = sampler(model(first, count), {count, image[0], image[1], image[2]}, o);
    put_batch(r.x0, b.x0, first);
    if (first == 0) {
      r.kept_t = b.kept_t;
      Shape chain_shape{chain_n, image[0], image[1], image[2]};
      for (size_t k = 0; k < b.chain.size(); k++) r.chain.emplace_back(chain_shape);
    }
    DDPM_CHECK(first >= chain_n || b.kept_t == r.kept_t, "sample_in_batches: the sampler kept other t in batch at " << first);
    const int64_t keep = std::min(count, chain_n - first);
    for (size_t k = 0; keep > 0 && k < b.chain.size(); k++) put_batch(r.chain[k], slice_batch(b.chain[k], 0, keep), first);
  }
  return r;
}

Tensor chain_figure(const SampleResult& r, int64_t rows) {
  const int64_t K = static_cast<int64_t>(r.chain.size());
  DDPM_CHECK(K >= 1, "chain_figure: the sample result has no chain (set keep_t)");
  const Tensor& c0 = r.chain[0];
  DDPM_CHECK(c0.dim() == 4 && rows >= 1 && rows <= c0.size(0),
             "chain_figure: " << rows << " rows from chain entries " << c0.shape_str());
  const int64_t D = c0.numel() / c0.size(0);
  Tensor fig({rows * K, c0.size(1), c0.size(2), c0.size(3)});  // [rows * K, C, H, W]
  for (int64_t k = 0; k < K; k++) {
    DDPM_CHECK(r.chain[k].shape() == c0.shape(), "chain_figure: chain entry " << k << " is " << r.chain[k].shape_str()
                                                                              << ", entry 0 is " << c0.shape_str());
    for (int64_t row = 0; row < rows; row++)
      std::copy(r.chain[k].data() + row * D, r.chain[k].data() + (row + 1) * D, fig.data() + (row * K + k) * D);
  }
  return fig;
}

Tensor forward_figure(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, uint64_t seed) {
  DDPM_CHECK(x0.defined() && x0.dim() == 4 && x0.size(0) >= 1, "forward_figure: x0 must be [N, C, H, W], got "
                                                                  << (x0.defined() ? x0.shape_str() : "undefined"));
  DDPM_CHECK(!t.empty(), "forward_figure: no timesteps given");
  for (int64_t tk : t) DDPM_CHECK(tk >= 0 && tk <= s.T, "forward_figure: t = " << tk << " is outside 0..T = 0.." << s.T);
  const int64_t N = x0.size(0), K = static_cast<int64_t>(t.size()), D = x0.numel() / N;
  Tensor fig({N * K, x0.size(1), x0.size(2), x0.size(3)});  // [N * K, C, H, W]
  forward_chain(s, x0, seed, 0, [&](int64_t t_now, const Tensor& x_t) {
    for (int64_t k = 0; k < K; k++) {
      if (t[k] != t_now) continue;
      for (int64_t row = 0; row < N; row++)
        std::copy(x_t.data() + row * D, x_t.data() + (row + 1) * D, fig.data() + (row * K + k) * D);
    }
  });
  return fig;
}

std::vector<int64_t> class_grid_labels(int64_t classes, int64_t cols) {
  DDPM_CHECK(classes >= 1 && cols >= 1, "class_grid_labels: " << classes << " classes x " << cols << " columns");
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < classes * cols; i++) labels.push_back(i / cols);
  return labels;
}

}  // namespace ddpm

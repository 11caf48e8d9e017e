// figures.h: what ./sample draws, as tensors ready for write_image_grid, and sampling in
// batches. The tool is a thin shell around these; the tests drive them directly.
//
//   sample_in_batches   Algorithm 2 (or any Sampler) over n images, `batch` at a time. The
//                       noise of image i is keyed by its global index i (SampleOptions::
//                       first_index), so the images are bit-identical for any batch size.
//   chain_figure        the denoising chain (slide "Reverse Process Output Using Linear
//                       Scheduler"): row r is sample r, column k is x_t at the k-th kept t,
//                       from x_T down to x_0.
//   forward_figure      the forward process (slide "Forward (Diffusion) Process (1/2)"): row r
//                       is real image r, column k is x_t at the k-th t (ascending from x_0),
//                       one trajectory of q(x_t | x_{t-1}) per row (forward_chain).
//   class_grid_labels   the labels of the class-conditional grid: one row per class.
//
// A figure tensor is [rows * K, C, H, W] in grid order (row-major), so
// write_image_grid(path, figure, K) lays it out with one picture row per figure row.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/app/flags.h"
#include "ddpm/extensions/ddim.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/core/tensor.h"

namespace ddpm {

// `count` timesteps evenly spaced from `from` to `to` (both included, either order),
// rounded to the nearest integer: from + round(k (to - from) / (count - 1)). count is
// capped at |to - from| + 1 so they are distinct; count = 1 gives {from}.
std::vector<int64_t> evenly_spaced_t(int64_t from, int64_t to, int64_t count);

// The predictor for images [first, first + count) of a batched run: a class-conditional
// run gives each batch its own labels through it.
using BatchEpsFn = std::function<EpsFn(int64_t first, int64_t count)>;
// One sampler run on one batch: shape = [count, C, H, W], options.first_index = first.
// ddpm_sampler is Algorithm 2 (ddpm::sample); ddim_sampler is ddim_sample with `ddim` (its
// keep_t and first_index come from the SampleOptions; options.reverse and options.progress
// are Algorithm 2's and are ignored: DDIM's clipping is ddim.clip_x0, and a learned variance
// plays no part in DDIM). The schedule must outlive the Sampler (it is held by reference).
using Sampler = std::function<SampleResult(const EpsFn& model, const Shape& shape, const SampleOptions& options)>;
Sampler ddpm_sampler(const Schedule& s, uint64_t seed);
Sampler ddim_sampler(const Schedule& s, uint64_t seed, const DdimOptions& ddim);

// The sampler chosen by the flags ./sample and ./eval share: --sampler ddpm|ddim,
// --ddim-steps S, --eta e, --spacing linspace|trailing, --clip-x0 (both samplers).
struct SamplerChoice {
  std::string sampler = "ddpm";      // ddpm (Algorithm 2) or ddim
  int64_t ddim_steps = 50;           // DDIM's S respaced steps
  double eta = 0.0;                  // DDIM's eta: 0 deterministic, 1 DDPM's beta-tilde variance
  std::string spacing = "trailing";  // DDIM's respacing: linspace or trailing
  bool clip_x0 = false;              // clip the predicted x_0 to [-1, 1] (a departure from Algorithm 2)
};
void add_sampler_flags(Flags& flags, SamplerChoice* choice);
// Checks the names and eta, and that --ddim-steps, --eta and --spacing come with --sampler ddim.
void check_sampler_flags(const Flags& flags, const SamplerChoice& choice);
// ddpm_sampler or ddim_sampler; checks 1 <= S <= T first. The schedule must outlive it.
Sampler make_sampler(const Schedule& s, uint64_t seed, const SamplerChoice& choice);
// "DDIM, 50 steps (trailing, eta 0)" or "Algorithm 2, 1000 steps, fixed_large" (DDIM does not
// use the variance), plus ", x_0 clipped".
std::string describe_sampler(const SamplerChoice& choice, int64_t T, VarianceType variance);

struct BatchedSampleOptions {
  SampleOptions sample;  // reverse and keep_t; first_index and progress are set per batch
  int64_t batch = 64;    // images per sampler call
  int64_t chain_n = -1;  // keep the chain (keep_t) of the first chain_n images only; -1: all
  // Called after each reverse step of each batch with the batch's [first, first + count)
  // and the t just done (see SampleOptions::progress).
  std::function<void(int64_t first, int64_t count, int64_t t)> progress;
};
// n images of shape image = [C, H, W]. The result holds x0 [n, C, H, W] and, for each
// kept t, the chain entry [min(n, chain_n), C, H, W].
SampleResult sample_in_batches(const Sampler& sampler, const BatchEpsFn& model, int64_t n, const Shape& image,
                               const BatchedSampleOptions& options);

// rows x K figure from a chain (K = r.chain.size(), in r.kept_t order): [rows * K, C, H, W].
// rows must not exceed the images in each chain entry.
Tensor chain_figure(const SampleResult& r, int64_t rows);

// x0 [N, C, H, W] at each t in `t` (each in 0..T, any order; t = 0 is x0 itself), along
// forward_chain(s, x0, seed): [N * t.size(), C, H, W].
Tensor forward_figure(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, uint64_t seed);

// Labels for `classes` rows of `cols` images: label of image i = i / cols.
std::vector<int64_t> class_grid_labels(int64_t classes, int64_t cols);

// Images [first, first + count) of x [N, ...] as a new tensor [count, ...].
Tensor slice_batch(const Tensor& x, int64_t first, int64_t count);

}  // namespace ddpm

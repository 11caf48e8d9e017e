// figures.h: what ./sample draws, as tensors ready for write_image_grid (sampling itself
// is ddpm/app/sampling.h). The tests drive them directly.
//
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

#include "ddpm/diffusion/algorithms.h"
#include "ddpm/diffusion/diffusion.h"
#include "ddpm/diffusion/schedule.h"
#include "ddpm/core/tensor.h"

namespace ddpm {

// `count` timesteps evenly spaced from `from` to `to` (both included, either order),
// rounded to the nearest integer: from + round(k (to - from) / (count - 1)). count is
// capped at |to - from| + 1 so they are distinct; count = 1 gives {from}.
std::vector<int64_t> evenly_spaced_t(int64_t from, int64_t to, int64_t count);

// rows x K figure from a chain (K = r.chain.size(), in r.kept_t order): [rows * K, C, H, W].
// rows must not exceed the images in each chain entry.
Tensor chain_figure(const SampleResult& r, int64_t rows);

// x0 [N, C, H, W] at each t in `t` (each in 0..T, any order; t = 0 is x0 itself), along
// forward_chain(s, x0, seed): [N * t.size(), C, H, W].
Tensor forward_figure(const Schedule& s, const Tensor& x0, const std::vector<int64_t>& t, uint64_t seed);

// Columns of a square-ish grid of n images: ceil(sqrt(n)).
int64_t grid_columns(int64_t n);

// Labels for `classes` rows of `cols` images: label of image i = i / cols.
std::vector<int64_t> class_grid_labels(int64_t classes, int64_t cols);

}  // namespace ddpm

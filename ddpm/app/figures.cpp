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

int64_t grid_columns(int64_t n) {
  int64_t c = 1;
  while (c * c < n) c++;
  return c;
}

std::vector<int64_t> class_grid_labels(int64_t classes, int64_t cols) {
  DDPM_CHECK(classes >= 1 && cols >= 1, "class_grid_labels: " << classes << " classes x " << cols << " columns");
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < classes * cols; i++) labels.push_back(i / cols);
  return labels;
}

}  // namespace ddpm

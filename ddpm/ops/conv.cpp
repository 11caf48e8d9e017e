#include "ddpm/ops/conv.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"

namespace ddpm {

namespace {

// The output positions o in [lo, hi) whose input position o*stride + offset lies in
// [0, n_in); offset = i - pad for kernel tap i. Outside that range the input is padding.
void valid_range(int64_t offset, int64_t n_in, int64_t stride, int64_t n_out, int64_t* lo, int64_t* hi) {
  *lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  *hi = offset > n_in - 1 ? 0 : std::min(n_out, (n_in - 1 - offset) / stride + 1);
  *lo = std::min(*lo, n_out);
  *hi = std::max(*hi, *lo);
}

// One channel of one image into its K*K rows of a panel with row stride ld:
//   cols[(i*K + j) * ld + oy*OW + ox] = x_c[oy*stride + i - pad, ox*stride + j - pad]   (0 outside)
void im2col_channel(float* cols, int64_t ld, const float* x_c, const Conv2dSize& s) {
  const int64_t OH = s.OH(), OW = s.OW();
  for (int64_t i = 0; i < s.K; i++) {
    int64_t oy_lo, oy_hi;
    valid_range(i - s.pad, s.H, s.stride, OH, &oy_lo, &oy_hi);
    for (int64_t j = 0; j < s.K; j++) {
      int64_t ox_lo, ox_hi;
      valid_range(j - s.pad, s.W, s.stride, OW, &ox_lo, &ox_hi);
      float* row = cols + (i * s.K + j) * ld;
      for (int64_t oy = 0; oy < OH; oy++) {
        float* r = row + oy * OW;
        if (oy < oy_lo || oy >= oy_hi) {
          std::fill(r, r + OW, 0.0f);
          continue;
        }
        const float* x_row = x_c + (oy * s.stride + i - s.pad) * s.W;
        const int64_t dj = j - s.pad;  // ix = ox * stride + dj, in [0, W) for ox in [ox_lo, ox_hi)
        std::fill(r, r + ox_lo, 0.0f);
        if (s.stride == 1) {
          if (ox_hi > ox_lo) std::memcpy(r + ox_lo, x_row + ox_lo + dj, (ox_hi - ox_lo) * sizeof(float));
        } else {
          for (int64_t ox = ox_lo; ox < ox_hi; ox++) r[ox] = x_row[ox * s.stride + dj];
        }
        std::fill(r + ox_hi, r + OW, 0.0f);
      }
    }
  }
}

// The adjoint of im2col_channel: every panel entry adds into the input pixel it was
// read from (padding entries are dropped). Fixed loop order, so fixed rounding.
//   dx_c[oy*stride + i - pad, ox*stride + j - pad] += dcols[(i*K + j) * ld + oy*OW + ox]
void col2im_channel(float* dx_c, const float* dcols, int64_t ld, const Conv2dSize& s) {
  const int64_t OH = s.OH(), OW = s.OW();
  for (int64_t i = 0; i < s.K; i++) {
    int64_t oy_lo, oy_hi;
    valid_range(i - s.pad, s.H, s.stride, OH, &oy_lo, &oy_hi);
    for (int64_t j = 0; j < s.K; j++) {
      int64_t ox_lo, ox_hi;
      valid_range(j - s.pad, s.W, s.stride, OW, &ox_lo, &ox_hi);
      const float* row = dcols + (i * s.K + j) * ld;
      for (int64_t oy = oy_lo; oy < oy_hi; oy++) {
        const float* r = row + oy * OW;
        float* dx_row = dx_c + (oy * s.stride + i - s.pad) * s.W;
        const int64_t dj = j - s.pad;
        for (int64_t ox = ox_lo; ox < ox_hi; ox++) dx_row[ox * s.stride + dj] += r[ox];
      }
    }
  }
}

// The im2col matrix of one image [C*K*K, P], explicitly (the general path).
void im2col_image(float* cols, const float* x_n, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), KK = s.K * s.K;
  for (int64_t c = 0; c < s.C; c++) im2col_channel(cols + c * KK * P, P, x_n + c * s.H * s.W, s);
}

// A stride-1 convolution of one image [C, H, W] as an implicit GEMM: no im2col matrix.
// The image is copied into a zero-padded plane xp [C, Hp, Wp] (Hp = H + 2 pad,
// Wp = W + 2 pad). Then the im2col row k = (c, i, j) is xp itself, read from offset
//   koff[k] = c*Hp*Wp + i*Wp + j,
// at column y*Wp + x for output position (y, x), and the GEMM reads it in place:
//   grid[OC, OH*Wp] = weight[OC, C*K*K] xp_view[C*K*K, OH*Wp]
// Each grid row has K-1 junk columns (x >= OW, which wrap into the next image row);
// they are dropped when the grid is copied out. The last row's junk columns read up
// to K-1 floats past the plane: xp has that much zeroed slack.
struct ImplicitConv {
  int64_t C, H, W, K, pad, Hp, Wp, OH, OW;
  std::vector<int64_t> koff;  // [C*K*K]

  ImplicitConv(int64_t C_, int64_t H_, int64_t W_, int64_t K_, int64_t pad_)
      : C(C_), H(H_), W(W_), K(K_), pad(pad_), Hp(H_ + 2 * pad_), Wp(W_ + 2 * pad_), OH(Hp - K_ + 1),
        OW(Wp - K_ + 1), koff(C_ * K_ * K_) {
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < K; j++) koff[(c * K + i) * K + j] = c * Hp * Wp + i * Wp + j;
  }
  int64_t plane_floats() const { return C * Hp * Wp + K; }
  int64_t grid_cols() const { return OH * Wp; }

  // xp = x zero-padded, plus the zeroed slack.
  void pad_image(float* xp, const float* x) const {
    std::fill(xp, xp + plane_floats(), 0.0f);
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = 0; y < H; y++)
        std::memcpy(xp + (c * Hp + y + pad) * Wp + pad, x + (c * H + y) * W, W * sizeof(float));
  }
  // The GEMM above: weight is [OC, C*K*K] row-major.
  void forward(float* grid, const float* weight, int64_t OC, const float* xp) const {
    const int64_t CKK = C * K * K;
    sgemm_view(OC, grid_cols(), CKK, MatrixView{weight, CKK, 1}, MatrixView{xp, 0, 1, koff.data(), nullptr}, grid,
               grid_cols(), false);
  }
  // The view of xp as the transposed im2col matrix [OH*Wp, C*K*K], for backward-weight.
  MatrixView cols_transposed(const float* xp) const { return MatrixView{xp, 1, 0, nullptr, koff.data()}; }
};

// Stride 1 with pad <= K-1 runs as an implicit GEMM, and so does its backward-data
// (a stride-1 convolution of dout with pad K-1-pad); 1x1 convolutions without padding
// are a plain GEMM on the image. The rest (stride 2: Downsample) builds im2col panels.
bool is_pointwise(const Conv2dSize& s) { return s.K == 1 && s.stride == 1 && s.pad == 0; }
bool is_implicit(const Conv2dSize& s) { return !is_pointwise(s) && s.stride == 1 && s.pad <= s.K - 1; }

// Images run in parallel (each image's GEMMs then run on one thread) when there are
// enough of them to share out; otherwise one at a time with the GEMMs split across
// threads. Either way each image is computed the same way: the split never shows.
void for_each_image(int64_t N, const std::function<void(int64_t n0, int64_t n1)>& fn) {
  if (N >= 2 * num_threads())
    parallel_for(N, fn);
  else
    fn(0, N);
}

// out[o, y, x] (+)= grid[o, y*Wp + x] (+ bias[o]) for the OC planes of one image.
void copy_out_grid(float* out, const float* grid, int64_t OC, int64_t OH, int64_t OW, int64_t Wp, const float* bias,
                   bool accumulate) {
  for (int64_t o = 0; o < OC; o++) {
    const float b = bias ? bias[o] : 0.0f;
    for (int64_t y = 0; y < OH; y++) {
      float* dst = out + (o * OH + y) * OW;
      const float* src = grid + o * OH * Wp + y * Wp;
      if (accumulate)
        for (int64_t x = 0; x < OW; x++) dst[x] += src[x];
      else
        for (int64_t x = 0; x < OW; x++) dst[x] = src[x] + b;
    }
  }
}

}  // namespace

// Backward-weight sums over the batch in a fixed number of partial sums (each over a
// contiguous block of images, in order), added up in block order afterwards.
int64_t conv2d_images_per_block(const Conv2dSize& s) {
  constexpr int64_t kMaxPartials = 8;
  return std::max<int64_t>(1, (s.N + kMaxPartials - 1) / kMaxPartials);
}

// ---------------------------------------------------------------------------
// Forward: out[n, o, p] = bias[o] + sum over r = (c, i, j) of weight[o, r] cols_n[r, p]

void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), CKK = s.C * s.K * s.K, image = s.C * s.H * s.W;
  if (is_implicit(s)) {
    const ImplicitConv ic(s.C, s.H, s.W, s.K, s.pad);
    for_each_image(s.N, [&](int64_t n0, int64_t n1) {
      Tensor xp = Tensor::empty({ic.plane_floats()}), grid = Tensor::empty({s.OC * ic.grid_cols()});  // scratch
      for (int64_t n = n0; n < n1; n++) {
        ic.pad_image(xp.data(), x + n * image);
        ic.forward(grid.data(), weight, s.OC, xp.data());
        copy_out_grid(out + n * s.OC * P, grid.data(), s.OC, s.OH(), s.OW(), ic.Wp, bias, false);
      }
    });
    return;
  }
  for_each_image(s.N, [&](int64_t n0, int64_t n1) {
    Tensor cols = Tensor::empty({is_pointwise(s) ? 0 : CKK * P});  // scratch
    for (int64_t n = n0; n < n1; n++) {
      // out_n[OC, P] = weight[OC, CKK] cols_n[CKK, P]  (a 1x1 convolution's cols_n is x_n)
      const float* cols_n = x + n * image;
      if (!is_pointwise(s)) {
        im2col_image(cols.data(), x + n * image, s);
        cols_n = cols.data();
      }
      float* out_n = out + n * s.OC * P;
      sgemm(false, false, s.OC, P, CKK, weight, CKK, cols_n, P, out_n, P, false);
      if (bias)
        for (int64_t o = 0; o < s.OC; o++)
          for (int64_t p = 0; p < P; p++) out_n[o * P + p] += bias[o];
    }
  });
}

// ---------------------------------------------------------------------------
// Backward of out[n, o, p] = bias[o] + sum over r of weight[o, r] cols_n[r, p]:
//   dbias[o]      += sum over n, p of dout[n, o, p]
//   dweight[o, r] += sum over n, p of dout[n, o, p] cols_n[r, p]
//   dcols_n[r, p]  = sum over o of weight[o, r] dout[n, o, p];  dx += col2im(dcols_n)

namespace {

void conv2d_backward_bias(float* dbias, const float* dout, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW();
  // Each o sums its images in order, so the result does not depend on the split.
  parallel_for(s.OC, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++) {
      float acc = 0.0f;
      for (int64_t n = 0; n < s.N; n++) acc += ddpm::sum(dout + (n * s.OC + o) * P, P);
      dbias[o] += acc;
    }
  });
}

// dweight[OC, CKK] += sum over n of dout_n[OC, P] cols_n[CKK, P]^T. Block b of images
// sums into its own partial; the partials are then added in block order. The blocks
// depend on N only, so the thread count never shows.
//
// sgemm computes each partial transposed, dweight^T[CKK, OC] = cols dout^T, so that
// cols (rows contiguous along p) is read in place as the broadcast operand and dout
// goes in transposed, dout_t[p, OC], packed by plain copies: nothing of size CKK x P
// is transposed. Two ways to get cols:
//   - large images (implicit GEMM grids of >= kImplicitWeightCols columns): per image,
//     read in place from the padded image, one GEMM per image (K = OH*Wp);
//   - small ones: an explicit im2col panel of the block's images side by side,
//     [CKK, nb*P], one GEMM per block. A per-image GEMM would have K = OH*Wp (63 at
//     7x7), too short to pay for loading and storing its [CKK, OC] result.
constexpr int64_t kImplicitWeightCols = 256;

void conv2d_backward_weight(float* dweight, const float* dout, const float* x, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), CKK = s.C * s.K * s.K, image = s.C * s.H * s.W;
  const int64_t per_block = conv2d_images_per_block(s), blocks = num_blocks(s.N, per_block);
  Tensor partials = Tensor::empty({blocks * s.OC * CKK});  // scratch, each block written before added to
  const bool implicit = is_implicit(s) && s.OH() * (s.W + 2 * s.pad) >= kImplicitWeightCols;
  if (implicit) {
    // dgrid_t[OH*Wp, OC]: dout on the implicit GEMM's grid, transposed, zero in the
    // junk columns.
    const ImplicitConv ic(s.C, s.H, s.W, s.K, s.pad);
    const int64_t OH = s.OH(), OW = s.OW(), G = ic.grid_cols();
    parallel_blocks(s.N, per_block, [&](int64_t b, int64_t n0, int64_t n1) {
      float* part = partials.data() + b * s.OC * CKK;
      Tensor xp = Tensor::empty({ic.plane_floats()}), dgrid_t = Tensor::zeros({G * s.OC});  // scratch
      for (int64_t n = n0; n < n1; n++) {
        ic.pad_image(xp.data(), x + n * image);
        // dgrid_t[y*Wp + x, o] = dout[n, o, y, x]
        for (int64_t o = 0; o < s.OC; o++)
          for (int64_t y = 0; y < OH; y++) {
            const float* src = dout + ((n * s.OC + o) * OH + y) * OW;
            float* dst = dgrid_t.data() + y * ic.Wp * s.OC + o;
            for (int64_t xo = 0; xo < OW; xo++) dst[xo * s.OC] = src[xo];
          }
        sgemm_view(s.OC, CKK, G, MatrixView{dgrid_t.data(), 1, s.OC}, ic.cols_transposed(xp.data()), part, CKK,
                   /*accumulate=*/n > n0);
      }
    });
  } else {
    parallel_blocks(s.N, per_block, [&](int64_t b, int64_t n0, int64_t n1) {
      float* part = partials.data() + b * s.OC * CKK;
      const int64_t nb = n1 - n0, ld = nb * P;
      Tensor cols = Tensor::empty({CKK * ld}), dout_t = Tensor::empty({ld * s.OC});  // scratch
      for (int64_t n = n0; n < n1; n++) {
        const int64_t at = (n - n0) * P;  // image n's columns in the panel
        const float* x_n = x + n * image;
        for (int64_t c = 0; c < s.C; c++) {
          if (is_pointwise(s))
            std::memcpy(cols.data() + c * ld + at, x_n + c * P, P * sizeof(float));
          else
            im2col_channel(cols.data() + c * s.K * s.K * ld + at, ld, x_n + c * s.H * s.W, s);
        }
        // dout_t[at + p, o] = dout[n, o, p]
        for (int64_t o = 0; o < s.OC; o++) {
          const float* src = dout + (n * s.OC + o) * P;
          for (int64_t p = 0; p < P; p++) dout_t[(at + p) * s.OC + o] = src[p];
        }
      }
      // part[OC, CKK] = dout_t^T cols^T
      sgemm_view(s.OC, CKK, ld, MatrixView{dout_t.data(), 1, s.OC}, MatrixView{cols.data(), 1, ld}, part, CKK, false);
    });
  }
  // dweight += partials, in block order
  parallel_for(s.OC * CKK, [&](int64_t i0, int64_t i1) {
    for (int64_t b = 0; b < blocks; b++) axpy(dweight + i0, 1.0f, partials.data() + b * s.OC * CKK + i0, i1 - i0);
  }, 4096);
}

// dx_n += col2im(weight^T dout_n), per image. For stride 1 that is the convolution of
// dout_n (padded by K-1-pad) with the flipped, transposed kernel
//   weight_flip[c, o, i, j] = weight[o, c, K-1-i, K-1-j],
// run as the same implicit GEMM as the forward pass.
void conv2d_backward_data(float* dx, const float* dout, const float* weight, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), CKK = s.C * s.K * s.K, image = s.C * s.H * s.W, KK = s.K * s.K;
  if (is_implicit(s)) {
    Tensor weight_flip = Tensor::empty({s.C, s.OC * KK});
    for (int64_t o = 0; o < s.OC; o++)
      for (int64_t c = 0; c < s.C; c++)
        for (int64_t r = 0; r < KK; r++) weight_flip[(c * s.OC + o) * KK + r] = weight[(o * s.C + c) * KK + KK - 1 - r];
    const ImplicitConv ic(s.OC, s.OH(), s.OW(), s.K, s.K - 1 - s.pad);  // its output is [C, H, W]
    for_each_image(s.N, [&](int64_t n0, int64_t n1) {
      Tensor dp = Tensor::empty({ic.plane_floats()}), grid = Tensor::empty({s.C * ic.grid_cols()});  // scratch
      for (int64_t n = n0; n < n1; n++) {
        ic.pad_image(dp.data(), dout + n * s.OC * P);
        ic.forward(grid.data(), weight_flip.data(), s.C, dp.data());
        copy_out_grid(dx + n * image, grid.data(), s.C, s.H, s.W, ic.Wp, nullptr, true);
      }
    });
    return;
  }
  for_each_image(s.N, [&](int64_t n0, int64_t n1) {
    Tensor dcols = Tensor::empty({is_pointwise(s) ? 0 : CKK * P});  // scratch
    for (int64_t n = n0; n < n1; n++) {
      const float* dout_n = dout + n * s.OC * P;
      if (is_pointwise(s)) {
        // dx_n[C, P] += weight[OC, C]^T dout_n[OC, P]
        sgemm(true, false, s.C, P, s.OC, weight, s.C, dout_n, P, dx + n * image, P, true);
        continue;
      }
      // dcols[CKK, P] = weight[OC, CKK]^T dout_n[OC, P], then col2im into dx_n
      sgemm(true, false, CKK, P, s.OC, weight, CKK, dout_n, P, dcols.data(), P, false);
      for (int64_t c = 0; c < s.C; c++) col2im_channel(dx + n * image + c * s.H * s.W, dcols.data() + c * KK * P, P, s);
    }
  });
}

}  // namespace

void conv2d_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     const Conv2dSize& s) {
  if (dbias) conv2d_backward_bias(dbias, dout, s);
  if (dweight) conv2d_backward_weight(dweight, dout, x, s);
  if (dx) conv2d_backward_data(dx, dout, weight, s);
}

// ---------------------------------------------------------------------------
// Plain twins: the formula in the header, looped directly, in double.

template <typename T>
void conv2d_forward_ref(T* out, const T* x, const T* weight, const T* bias, const Conv2dSize& s) {
  const int64_t OH = s.OH(), OW = s.OW();
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t o = 0; o < s.OC; o++)
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          double acc = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < s.C; c++)
            for (int64_t i = 0; i < s.K; i++)
              for (int64_t j = 0; j < s.K; j++) {
                const int64_t iy = oy * s.stride + i - s.pad, ix = ox * s.stride + j - s.pad;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;  // zero padding
                acc += static_cast<double>(weight[((o * s.C + c) * s.K + i) * s.K + j]) *
                       x[((n * s.C + c) * s.H + iy) * s.W + ix];
              }
          out[((n * s.OC + o) * OH + oy) * OW + ox] = static_cast<T>(acc);
        }
}
template void conv2d_forward_ref<float>(float*, const float*, const float*, const float*, const Conv2dSize&);
template void conv2d_forward_ref<double>(double*, const double*, const double*, const double*, const Conv2dSize&);

void conv2d_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, const Conv2dSize& s) {
  const int64_t OH = s.OH(), OW = s.OW();
  std::vector<double> dx_acc(s.N * s.C * s.H * s.W, 0.0), dw_acc(s.OC * s.C * s.K * s.K, 0.0), db_acc(s.OC, 0.0);
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t o = 0; o < s.OC; o++)
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          const double g = dout[((n * s.OC + o) * OH + oy) * OW + ox];
          db_acc[o] += g;  // out = bias[o] + ...
          for (int64_t c = 0; c < s.C; c++)
            for (int64_t i = 0; i < s.K; i++)
              for (int64_t j = 0; j < s.K; j++) {
                const int64_t iy = oy * s.stride + i - s.pad, ix = ox * s.stride + j - s.pad;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                const int64_t w_at = ((o * s.C + c) * s.K + i) * s.K + j, x_at = ((n * s.C + c) * s.H + iy) * s.W + ix;
                // out += weight[o, c, i, j] * x[n, c, iy, ix]
                dw_acc[w_at] += g * x[x_at];
                dx_acc[x_at] += g * weight[w_at];
              }
        }
  if (dx)
    for (size_t k = 0; k < dx_acc.size(); k++) dx[k] += static_cast<float>(dx_acc[k]);
  if (dweight)
    for (size_t k = 0; k < dw_acc.size(); k++) dweight[k] += static_cast<float>(dw_acc[k]);
  if (dbias)
    for (size_t k = 0; k < db_acc.size(); k++) dbias[k] += static_cast<float>(db_acc[k]);
}

// ---------------------------------------------------------------------------
// Tape op

Var conv2d(Tape& tape, const Var& x, const Var& weight, const Var& bias, int64_t stride, int64_t pad) {
  const Tensor& xv = x->value;
  const Tensor& wv = weight->value;
  DDPM_CHECK(xv.dim() == 4, "conv2d: input " << xv.shape_str() << " must be 4-D [N, C, H, W]");
  DDPM_CHECK(wv.dim() == 4 && wv.size(2) == wv.size(3) && wv.size(2) >= 1 && wv.size(1) == xv.size(1),
             "conv2d: weight " << wv.shape_str() << " must be [OC, C, K, K] with C = " << xv.size(1)
                               << " for input " << xv.shape_str());
  DDPM_CHECK(stride >= 1 && pad >= 0, "conv2d: stride " << stride << " must be >= 1 and pad " << pad << " >= 0");
  const Conv2dSize s{xv.size(0), xv.size(1), xv.size(2), xv.size(3), wv.size(0), wv.size(2), stride, pad};
  DDPM_CHECK(s.H + 2 * pad >= s.K && s.W + 2 * pad >= s.K,
             "conv2d: input " << xv.shape_str() << " with pad " << pad << " is smaller than the kernel "
                              << wv.shape_str() << "; the output would be empty");
  if (bias) {
    DDPM_CHECK(bias->value.shape() == Shape{s.OC},
               "conv2d: bias " << bias->value.shape_str() << " must be [" << s.OC << "] for weight "
                               << wv.shape_str() << " (or pass a null Var for no bias)");
  }
  // One GEMM's flops (forward, backward-data and backward-weight each do this many).
  const double flops = 2.0 * s.N * s.OC * s.OH() * s.OW() * s.C * s.K * s.K;
  Tensor out = Tensor::empty({s.N, s.OC, s.OH(), s.OW()});
  {
    ProfileScope timer(ProfileOp::conv_forward, flops, s.H);
    conv2d_forward(out.data(), xv.data(), wv.data(), bias ? bias->value.data() : nullptr, s);
  }
  return tape.record("conv2d", out, {x, weight, bias}, [x, weight, bias, s, flops](Node& o) {
    {
      ProfileScope timer(ProfileOp::conv_backward_weight, flops, s.H);
      float* dweight = weight->requires_grad ? weight->grad_ref().data() : nullptr;
      float* dbias = bias && bias->requires_grad ? bias->grad_ref().data() : nullptr;
      conv2d_backward(nullptr, dweight, dbias, o.grad.data(), x->value.data(), weight->value.data(), s);
    }
    if (x->requires_grad) {
      ProfileScope timer(ProfileOp::conv_backward_data, flops, s.H);
      conv2d_backward(x->grad_ref().data(), nullptr, nullptr, o.grad.data(), x->value.data(), weight->value.data(), s);
    }
  });
}

}  // namespace ddpm

#include "ddpm/ops/conv.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"
#include "ddpm/core/simd.h"

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
// Inference: tap planes, packed weights and the direct convolution (see conv.h).

ConvPlanes conv2d_planes(int64_t C, int64_t H, int64_t W, int64_t K, int64_t stride, int64_t pad) {
  ConvPlanes p{C, H, W, K, stride, pad, 0, 0};
  DDPM_CHECK(C >= 1 && H >= 1 && W >= 1, "conv2d_planes: input [" << C << ", " << H << ", " << W << "] is empty");
  const int64_t slack = kConvSlack;
  if (K == 1 && stride == 1 && pad == 0) {
    p.OH = H;
    p.OW = W;
    p.plane_floats = H * W;  // the image itself; its buffer brings the slack
  } else if (K == 3 && stride == 1 && pad == 1) {
    p.OH = H;
    p.OW = W;
    p.planes = 3;
    p.plane_floats = (H + 2) * W + slack;
    p.row_step = W;
    p.col_step = p.plane_floats;
  } else if (K == 3 && stride == 2 && pad == 1) {
    p.OH = (H - 1) / 2 + 1;
    p.OW = (W - 1) / 2 + 1;
    p.planes = 9;
    p.plane_floats = p.OH * p.OW + slack;
    p.row_step = 3 * p.plane_floats;
    p.col_step = p.plane_floats;
  } else {
    DDPM_FAIL("conv2d_planes: K " << K << ", stride " << stride << ", pad " << pad
                                  << " is not one of 1x1 (stride 1, pad 0) and 3x3 (pad 1, stride 1 or 2)");
  }
  return p;
}

// The three column-shifted planes of a stride-1 3x3 input (conv.h): plane_j's rows 0..H-1
// are the image shifted by 1 - j with the column that shifted in zeroed, so each plane is
// one copy of the image, plus H zeros and the two zero rows.
//   plane_0[(y + 1) W + x] = in[y, x - 1]:   plane_0[W + m] = image[m - 1], 0 where x = 0
//   plane_1[(y + 1) W + x] = in[y, x]:       plane_1[W + m] = image[m]
//   plane_2[(y + 1) W + x] = in[y, x + 1]:   plane_2[W + m] = image[m + 1], 0 where x = W - 1
// plane_1's rows may already hold the image (written there by the caller, image == null).
void conv2d_zero_planes_border(float* dst, const ConvPlanes& p) {
  const int64_t W = p.W, HW = p.H * p.W;
  float* d0 = dst;
  float* d2 = dst + 2 * p.plane_floats;
  for (int64_t y = 0; y < p.H; y++) {
    d0[W + y * W] = 0.0f;           // in[y, -1]
    d2[W + y * W + W - 1] = 0.0f;   // in[y, W]
  }
  for (int64_t j = 0; j < 3; j++) {  // rows -1 and H
    float* d = dst + j * p.plane_floats;
    std::fill(d, d + W, 0.0f);
    std::fill(d + W + HW, d + 2 * W + HW, 0.0f);
  }
}

static void write_shifted_planes(float* dst, const float* image, const ConvPlanes& p) {
  const int64_t W = p.W, HW = p.H * p.W;
  float* d1 = dst + p.plane_floats + W;
  if (image) std::memcpy(d1, image, HW * sizeof(float));
  std::memcpy(dst + W + 1, d1, (HW - 1) * sizeof(float));                   // plane 0
  std::memcpy(dst + 2 * p.plane_floats + W, d1 + 1, (HW - 1) * sizeof(float));  // plane 2
  conv2d_zero_planes_border(dst, p);
}

float* conv2d_center_plane(float* dst, const ConvPlanes& p) {
  DDPM_CHECK(p.planes == 3, "conv2d_center_plane: only the stride-1 3x3 planes hold the image itself");
  return dst + p.plane_floats + p.W;
}

void conv2d_write_planes(float* dst, const float* image, const ConvPlanes& p) {
  DDPM_CHECK(p.planes > 1, "conv2d_write_planes: a 1x1 convolution reads the image itself");
  if (p.planes == 3) {
    write_shifted_planes(dst, image, p);
    return;
  }
  // 9 planes: plane (i, j)[oy, ox] = in[2 oy + i - 1, 2 ox + j - 1], an im2col. Per source
  // row, the column taps are its odd values shifted by one (j = 0), its even values (j = 1)
  // and its odd values (j = 2), 0 where they fall outside.
  const int64_t OW = p.OW, W = p.W;
  for (int64_t i = 0; i < 3; i++)
    for (int64_t oy = 0; oy < p.OH; oy++) {
      const int64_t iy = 2 * oy + i - 1;
      float* d0 = dst + (i * 3 + 0) * p.plane_floats + oy * OW;
      float* d1 = d0 + p.plane_floats;
      float* d2 = d1 + p.plane_floats;
      if (iy < 0 || iy >= p.H) {
        std::fill(d0, d0 + OW, 0.0f);
        std::fill(d1, d1 + OW, 0.0f);
        std::fill(d2, d2 + OW, 0.0f);
        continue;
      }
      const float* src = image + iy * W;
      const int64_t odd = W / 2;  // in[iy, 2 ox + 1] exists for ox < W / 2
      d0[0] = 0.0f;
      for (int64_t ox = 1; ox < OW; ox++) d0[ox] = src[2 * ox - 1];
      for (int64_t ox = 0; ox < OW; ox++) d1[ox] = src[2 * ox];
      for (int64_t ox = 0; ox < odd; ox++) d2[ox] = src[2 * ox + 1];
      for (int64_t ox = odd; ox < OW; ox++) d2[ox] = 0.0f;
    }
}

void conv2d_write_planes_upsampled(float* dst, const float* image, const ConvPlanes& p) {
  DDPM_CHECK(p.planes == 3 && p.H % 2 == 0 && p.W % 2 == 0,
             "conv2d_write_planes_upsampled: wants the planes of a stride-1 3x3 convolution of an even-sized image");
  const int64_t w = p.W / 2;
  float* center = conv2d_center_plane(dst, p);
  for (int64_t y = 0; y < p.H; y++) {
    const float* src = image + (y / 2) * w;  // out[y, x] = in[y / 2, x / 2]
    float* row = center + y * p.W;
    if (y % 2) {
      std::memcpy(row, row - p.W, p.W * sizeof(float));
      continue;
    }
    for (int64_t x = 0; x < w; x++) row[2 * x] = row[2 * x + 1] = src[x];
  }
  write_shifted_planes(dst, nullptr, p);
}

void conv2d_write_planes_ref(float* dst, const float* image, const ConvPlanes& p, bool upsampled) {
  // in[y, x] of the (possibly upsampled) image, 0 outside it
  auto in = [&](int64_t y, int64_t x) -> float {
    if (y < 0 || y >= p.H || x < 0 || x >= p.W) return 0.0f;
    return upsampled ? image[(y / 2) * (p.W / 2) + x / 2] : image[y * p.W + x];
  };
  for (int64_t i = 0; i < 3; i++)
    for (int64_t j = 0; j < 3; j++)
      for (int64_t oy = 0; oy < p.OH; oy++)
        for (int64_t ox = 0; ox < p.OW; ox++)
          dst[i * p.row_step + j * p.col_step + oy * p.OW + ox] = in(oy * p.stride + i - 1, ox * p.stride + j - 1);
}

// Row panels: kPanelRows rows while that many are left, then 4, 2, 1; tiles of kConvNV
// vectors of positions.
#if defined(DDPM_SIMD_TARGET_AVX512) || defined(DDPM_SIMD_TARGET_NEON)
constexpr int kPanelRows = 8;  // 8 x 3 vectors: 24 accumulators of 32 registers
#else
constexpr int kPanelRows = 4;  // AVX2: 12 accumulators of 16 registers (and the scalar target likewise)
#endif
const int kConvMR = kPanelRows;
constexpr int kConvNV = 3;

static int panel_rows(int64_t left) {
  int r = kConvMR;
  while (r > left) r /= 2;
  return r;
}

void conv2d_pack_weights(float* packed, const float* weight, int64_t OC, int64_t CKK) {
  for (int64_t o0 = 0; o0 < OC;) {
    const int rows = panel_rows(OC - o0);
    float* panel = packed + o0 * CKK;
    for (int64_t k = 0; k < CKK; k++)
      for (int r = 0; r < rows; r++) panel[k * rows + r] = weight[(o0 + r) * CKK + k];  // panel[k][r]
    o0 += rows;
  }
}

namespace {

// One tile: MRt output channels x NV vectors of positions [p0, p0 + NV * kLanes), of which
// the last vector stores `last` lanes. w is the row panel's packed weights [CKK][MRt]; out
// and the residual have rows of ld.
//   acc[r][v] = sum over c, i, j of w[(c, i, j)][r] * in[c][i * row_step + j * col_step + p]
template <int MRt, int NV, int KS>
void conv_tile(float* out, int64_t ld, const float* const* in, int64_t C, int64_t row_step, int64_t col_step,
               int64_t p0, int last, const float* w, const float* bias, const ConvEpilogue& e) {
  using namespace simd;
  Vec acc[MRt][NV];
  for (int r = 0; r < MRt; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = zero();
  for (int64_t c = 0; c < C; c++) {
    const float* x = in[c] + p0;
    // Fetch the next channel's taps ahead: a channel's planes are ~10 KB apart, past what
    // the hardware's stride prefetcher follows (28x28 with 96 channels: 130 -> 165 GFLOP/s).
    const float* xn = in[c + 1 < C ? c + 1 : c] + p0;
    for (int i = 0; i < KS; i++)
      for (int j = 0; j < KS; j++) {
        const float* xt = x + i * row_step + j * col_step;
        for (int l = 0; l <= NV * kLanes / 16; l++) prefetch(xn + i * row_step + j * col_step + l * 16);  // lines
        Vec q[NV];
        for (int v = 0; v < NV; v++) q[v] = load(xt + v * kLanes);
        for (int r = 0; r < MRt; r++) {
          const Vec a = broadcast(w + r);
          for (int v = 0; v < NV; v++) acc[r][v] = mul_add(a, q[v], acc[r][v]);
        }
        w += MRt;
      }
  }
  // out = residual + ((acc + bias) + temb): conv2d's bias, then add's, in their order
  for (int r = 0; r < MRt; r++) {
    const Vec b = set1(bias[r]);
    const Vec t = set1(e.temb ? e.temb[r] : 0.0f);
    for (int v = 0; v < NV; v++) {
      const int64_t at = r * ld + p0 + v * kLanes;
      const int n = v + 1 < NV ? kLanes : last;
      Vec y = add(acc[r][v], b);
      if (e.temb) y = add(y, t);
      if (e.residual) y = add(n == kLanes ? load(e.residual + at) : load_first(e.residual + at, n), y);
      if (n == kLanes)
        store(out + at, y);
      else
        store_first(out + at, y, n);
    }
  }
}

// Positions [0, P) of one row panel (out's rows are ld long) in tiles of kConvNV vectors,
// then a tile of 1 or 2 (the last vector `last` lanes); four vectors left go as two of two.
template <int MRt, int KS>
void conv_panel(float* out, int64_t P, int64_t ld, const float* const* in, int64_t C, int64_t row_step,
                int64_t col_step, const float* w, const float* bias, const ConvEpilogue& e) {
  using simd::kLanes;
  const int64_t vectors = (P + kLanes - 1) / kLanes;
  const int last = static_cast<int>(P - (vectors - 1) * kLanes);
  int64_t v0 = 0;
  for (; vectors - v0 >= kConvNV && vectors - v0 != 4; v0 += kConvNV)
    conv_tile<MRt, kConvNV, KS>(out, ld, in, C, row_step, col_step, v0 * kLanes, v0 + kConvNV == vectors ? last : kLanes,
                                w, bias, e);
  for (; v0 < vectors; v0 += 2) {
    if (vectors - v0 >= 2)
      conv_tile<MRt, 2, KS>(out, ld, in, C, row_step, col_step, v0 * kLanes, v0 + 2 == vectors ? last : kLanes, w, bias,
                            e);
    else
      conv_tile<MRt, 1, KS>(out, ld, in, C, row_step, col_step, v0 * kLanes, last, w, bias, e);
  }
}

// The last NP positions [p0, p0 + NP) (fewer than a vector) of G consecutive row panels of
// MRt channels, with each panel's channels along the lanes instead of the positions: a
// panel's packed weights for one k are MRt consecutive floats (panel g's at w + g MRt CKK,
// read again from L2 after its tiles). G panels at once keep G FMA chains in flight.
//   acc[q][g][r] = sum over c, i, j of w_g[(c, i, j)][r] * in[c][i * row_step + j * col_step + p0 + q]
// (each lane one output channel's FMA chain in k order, as in conv_tile).
constexpr int kTailPositions = 4;  // at most this many positions go this way
#if defined(DDPM_SIMD_TARGET_AVX512)
constexpr int kTailPanels = 4;  // 4 positions x 4 panels: 16 accumulators
#else
constexpr int kTailPanels = 2;  // AVX2's 16 registers; NEON's 8-row panels take 2 vectors each
#endif

template <int MRt, int NP, int G, int KS>
void conv_tail(float* out, int64_t ld, const float* const* in, int64_t C, int64_t row_step, int64_t col_step,
               int64_t p0, const float* w, int64_t CKK, const float* bias, const ConvEpilogue& e) {
  using namespace simd;
  constexpr int NR = (MRt + kLanes - 1) / kLanes;  // vectors per panel
  Vec acc[NP][G][NR];
  for (int q = 0; q < NP; q++)
    for (int g = 0; g < G; g++)
      for (int v = 0; v < NR; v++) acc[q][g][v] = zero();
  for (int64_t c = 0; c < C; c++) {
    const float* x = in[c] + p0;
    for (int i = 0; i < KS; i++)
      for (int j = 0; j < KS; j++) {
        const float* xt = x + i * row_step + j * col_step;
        Vec wv[G][NR];
        for (int g = 0; g < G; g++)
          for (int v = 0; v < NR; v++) {
            const float* wg = w + g * MRt * CKK + v * kLanes;
            wv[g][v] = MRt >= (v + 1) * kLanes ? load(wg) : load_first(wg, MRt - v * kLanes);
          }
        for (int q = 0; q < NP; q++) {
          const Vec a = broadcast(xt + q);
          for (int g = 0; g < G; g++)
            for (int v = 0; v < NR; v++) acc[q][g][v] = mul_add(wv[g][v], a, acc[q][g][v]);
        }
        w += MRt;
      }
  }
  // out = residual + ((acc + bias) + temb), as conv_tile, one value at a time
  alignas(64) float tile[NP][G][NR * kLanes];
  for (int q = 0; q < NP; q++)
    for (int g = 0; g < G; g++)
      for (int v = 0; v < NR; v++) store(tile[q][g] + v * kLanes, acc[q][g][v]);
  for (int g = 0; g < G; g++)
    for (int r = 0; r < MRt; r++)
      for (int q = 0; q < NP; q++) {
        const int o = g * MRt + r;
        const int64_t at = o * ld + p0 + q;
        float y = tile[q][g][r] + bias[o];
        if (e.temb) y = y + e.temb[o];
        if (e.residual) y = e.residual[at] + y;
        out[at] = y;
      }
}

template <int MRt, int G, int KS>
void conv_tail_positions(int tail, float* out, int64_t ld, const float* const* in, const ConvPlanes& p, int64_t p0,
                         const float* w, int64_t CKK, const float* bias, const ConvEpilogue& e) {
  switch (tail) {
    case 1: conv_tail<MRt, 1, G, KS>(out, ld, in, p.C, p.row_step, p.col_step, p0, w, CKK, bias, e); break;
    case 2: conv_tail<MRt, 2, G, KS>(out, ld, in, p.C, p.row_step, p.col_step, p0, w, CKK, bias, e); break;
    case 3: conv_tail<MRt, 3, G, KS>(out, ld, in, p.C, p.row_step, p.col_step, p0, w, CKK, bias, e); break;
    default: conv_tail<MRt, 4, G, KS>(out, ld, in, p.C, p.row_step, p.col_step, p0, w, CKK, bias, e); break;
  }
}

// Whole vectors of positions in tiles, panel by panel; then, when only a few positions are
// left past the last whole vector, those along the channels, kTailPanels panels at a time.
template <int KS>
void conv_panels(float* out, const float* const* in, const ConvPlanes& p, const float* packed, const float* bias,
                 int64_t OC, const ConvEpilogue& e) {
  const int64_t P = p.P(), CKK = p.C * KS * KS;
  const int tail = simd::kLanes > 1 && P > simd::kLanes ? static_cast<int>(P % simd::kLanes) : 0;
  const bool along_channels = tail > 0 && tail <= kTailPositions;
  const int64_t P_tiles = along_channels ? P - tail : P;
  auto panel_epilogue = [&](int64_t o0) {  // the rows from o0 on
    ConvEpilogue eo;
    eo.temb = e.temb ? e.temb + o0 : nullptr;
    eo.residual = e.residual ? e.residual + o0 * P : nullptr;
    return eo;
  };
  for (int64_t o0 = 0; o0 < OC;) {
    const int rows = panel_rows(OC - o0);
    const ConvEpilogue eo = panel_epilogue(o0);
    const float* w = packed + o0 * CKK;
    float* o = out + o0 * P;
    switch (rows) {
      case 8: conv_panel<8, KS>(o, P_tiles, P, in, p.C, p.row_step, p.col_step, w, bias + o0, eo); break;
      case 4: conv_panel<4, KS>(o, P_tiles, P, in, p.C, p.row_step, p.col_step, w, bias + o0, eo); break;
      case 2: conv_panel<2, KS>(o, P_tiles, P, in, p.C, p.row_step, p.col_step, w, bias + o0, eo); break;
      default: conv_panel<1, KS>(o, P_tiles, P, in, p.C, p.row_step, p.col_step, w, bias + o0, eo); break;
    }
    o0 += rows;
  }
  if (!along_channels) return;
  for (int64_t o0 = 0; o0 < OC;) {
    const int rows = panel_rows(OC - o0);
    const int64_t group = rows == kConvMR && (OC - o0) / kConvMR >= kTailPanels ? kTailPanels : 1;
    const ConvEpilogue eo = panel_epilogue(o0);
    const float* w = packed + o0 * CKK;
    float* o = out + o0 * P;
    if (group == kTailPanels)
      conv_tail_positions<kPanelRows, kTailPanels, KS>(tail, o, P, in, p, P_tiles, w, CKK, bias + o0, eo);
    else if (rows == kConvMR)
      conv_tail_positions<kPanelRows, 1, KS>(tail, o, P, in, p, P_tiles, w, CKK, bias + o0, eo);
    else if (rows == 4)
      conv_tail_positions<4, 1, KS>(tail, o, P, in, p, P_tiles, w, CKK, bias + o0, eo);
    else if (rows == 2)
      conv_tail_positions<2, 1, KS>(tail, o, P, in, p, P_tiles, w, CKK, bias + o0, eo);
    else
      conv_tail_positions<1, 1, KS>(tail, o, P, in, p, P_tiles, w, CKK, bias + o0, eo);
    o0 += group * rows;
  }
}

}  // namespace

void conv2d_planes_forward(float* out, const float* const* in, const ConvPlanes& p, const float* packed_weight,
                           const float* bias, int64_t OC, const ConvEpilogue& e) {
  if (p.K == 1)
    conv_panels<1>(out, in, p, packed_weight, bias, OC, e);
  else
    conv_panels<3>(out, in, p, packed_weight, bias, OC, e);
}

// Phase a's row tap u covers the 3x3 kernel's rows [tap_first(a, u), tap_first(a, u + 1)):
// a = 0: {0}, {1, 2};  a = 1: {0, 1}, {2}. Columns likewise with b.
static int tap_first(int a, int u) { return u == 0 ? 0 : u == 1 ? 1 + a : 3; }

void conv2d_pack_upsampled_weights(float* packed, const float* weight, int64_t OC, int64_t C) {
  std::vector<float> phase(OC * C * 4);  // We_ab [OC, C, 2, 2]
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++) {
      for (int64_t oc = 0; oc < OC * C; oc++)
        for (int u = 0; u < 2; u++)
          for (int v = 0; v < 2; v++) {
            double sum = 0.0;  // We_ab[o, c, u, v] = the sum of the 3x3 taps it stands for
            for (int i = tap_first(a, u); i < tap_first(a, u + 1); i++)
              for (int j = tap_first(b, v); j < tap_first(b, v + 1); j++) sum += weight[oc * 9 + i * 3 + j];
            phase[oc * 4 + u * 2 + v] = static_cast<float>(sum);
          }
      conv2d_pack_weights(packed + (a * 2 + b) * OC * C * 4, phase.data(), OC, C * 4);
    }
}

void conv2d_upsampled_forward(float* out, const float* const* in, const ConvPlanes& p, const float* packed_weight,
                              const float* bias, int64_t OC) {
  DDPM_CHECK(p.planes == 3, "conv2d_upsampled_forward: wants the stride-1 3x3 planes of the image to upsample");
  const int64_t H = p.H, W = p.W, HW = H * W, C = p.C;
  thread_local std::vector<float> phases;  // scratch: the four phases' outputs [4, OC, HW]
  thread_local std::vector<const float*> shifted;
  phases.resize(4 * OC * HW + kConvSlack);
  shifted.resize(C);
  ConvPlanes p2 = p;  // 2x2 taps: (u, v) at plane b + v, row a + u (plane_j row y + 1 is x's row y)
  p2.K = 2;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++) {
      for (int64_t c = 0; c < C; c++) shifted[c] = in[c] + a * p.row_step + b * p.col_step;
      conv_panels<2>(phases.data() + (a * 2 + b) * OC * HW, shifted.data(), p2,
                     packed_weight + (a * 2 + b) * OC * C * 4, bias, OC, ConvEpilogue{});
    }
  // out[o, 2y + a, 2x + b] = phase_ab[o, y, x]
  for (int64_t o = 0; o < OC; o++)
    for (int64_t y = 0; y < H; y++)
      for (int a = 0; a < 2; a++) {
        const float* p0 = phases.data() + ((a * 2 + 0) * OC + o) * HW + y * W;
        const float* p1 = phases.data() + ((a * 2 + 1) * OC + o) * HW + y * W;
        float* row = out + (o * 2 * H + 2 * y + a) * 2 * W;
        for (int64_t x = 0; x < W; x++) {
          row[2 * x] = p0[x];
          row[2 * x + 1] = p1[x];
        }
      }
}

void conv2d_planes_forward_ref(float* out, const float* const* in, const ConvPlanes& p, const float* weight,
                               const float* bias, int64_t OC, const ConvEpilogue& e) {
  const int64_t P = p.P(), K = p.K;
  for (int64_t o = 0; o < OC; o++)
    for (int64_t q = 0; q < P; q++) {
      double acc = bias[o];
      for (int64_t c = 0; c < p.C; c++)
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < K; j++)
            acc += static_cast<double>(weight[(o * p.C + c) * K * K + i * K + j]) *
                   in[c][i * p.row_step + j * p.col_step + q];
      if (e.temb) acc += e.temb[o];
      if (e.residual) acc += e.residual[o * P + q];
      out[o * P + q] = static_cast<float>(acc);
    }
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

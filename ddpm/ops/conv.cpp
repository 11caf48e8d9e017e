#include "ddpm/ops/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ddpm/check.h"
#include "ddpm/kernels.h"
#include "ddpm/parallel.h"
#include "ddpm/profile.h"

namespace ddpm {

namespace {

constexpr int64_t kPanelFloats = int64_t(1) << 20;  // im2col panel budget: 4 MB of float

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

// The panel for images [n0, n0 + nb): image b's columns start at b * P.
void im2col_block(float* cols, const float* x, int64_t n0, int64_t nb, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), KK = s.K * s.K, ld = nb * P;
  parallel_for(nb * s.C, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t b = t / s.C, c = t % s.C;
      im2col_channel(cols + c * KK * ld + b * P, ld, x + ((n0 + b) * s.C + c) * s.H * s.W, s);
    }
  });
}

void col2im_block(float* dx, const float* dcols, int64_t n0, int64_t nb, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), KK = s.K * s.K, ld = nb * P;
  parallel_for(nb * s.C, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t b = t / s.C, c = t % s.C;
      col2im_channel(dx + ((n0 + b) * s.C + c) * s.H * s.W, dcols + c * KK * ld + b * P, ld, s);
    }
  });
}

}  // namespace

int64_t conv2d_images_per_block(const Conv2dSize& s) {
  const int64_t per_image = s.C * s.K * s.K * s.OH() * s.OW();
  if (per_image <= 0) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(s.N, kPanelFloats / per_image));
}

// ---------------------------------------------------------------------------
// Forward: out[n, o, p] = bias[o] + sum over r = (c, i, j) of weight[o, r] cols_n[r, p]

void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), CKK = s.C * s.K * s.K;
  const int64_t B = conv2d_images_per_block(s);
  Tensor cols = Tensor::empty({CKK * B * P}), out_t = Tensor::empty({s.OC * B * P});  // scratch, written before read
  for (int64_t n0 = 0; n0 < s.N; n0 += B) {
    const int64_t nb = std::min(B, s.N - n0), ld = nb * P;
    im2col_block(cols.data(), x, n0, nb, s);
    // out_t[OC, nb*P] = weight[OC, CKK] cols[CKK, nb*P]
    sgemm(false, false, s.OC, ld, CKK, weight, CKK, cols.data(), ld, out_t.data(), ld, false);
    // out[n0 + b, o, p] = out_t[o, b*P + p] + bias[o]
    parallel_for(nb * s.OC, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        const int64_t b = t / s.OC, o = t % s.OC;
        float* dst = out + ((n0 + b) * s.OC + o) * P;
        const float* src = out_t.data() + o * ld + b * P;
        const float bo = bias ? bias[o] : 0.0f;
        for (int64_t p = 0; p < P; p++) dst[p] = src[p] + bo;
      }
    });
  }
}

// ---------------------------------------------------------------------------
// Backward of out[n, o, p] = bias[o] + sum over r of weight[o, r] cols_n[r, p]:
//   dbias[o]      += sum over n, p of dout[n, o, p]
//   dweight[o, r] += sum over n, p of dout[n, o, p] cols_n[r, p]
//   dcols_n[r, p]  = sum over o of weight[o, r] dout[n, o, p];  dx += col2im(dcols_n)

void conv2d_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     const Conv2dSize& s) {
  const int64_t P = s.OH() * s.OW(), CKK = s.C * s.K * s.K;
  if (dbias) {
    // Each o sums its images in order, so the result does not depend on the split.
    parallel_for(s.OC, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; o++) {
        float acc = 0.0f;
        for (int64_t n = 0; n < s.N; n++) acc += ddpm::sum(dout + (n * s.OC + o) * P, P);
        dbias[o] += acc;
      }
    });
  }
  if (!dx && !dweight) return;
  const int64_t B = conv2d_images_per_block(s);
  Tensor cols = Tensor::empty({CKK * B * P}), dout_t = Tensor::empty({s.OC * B * P});  // scratch, written before read
  for (int64_t n0 = 0; n0 < s.N; n0 += B) {
    const int64_t nb = std::min(B, s.N - n0), ld = nb * P;
    // dout_t[o, b*P + p] = dout[n0 + b, o, p]
    parallel_for(nb * s.OC, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) {
        const int64_t b = t / s.OC, o = t % s.OC;
        std::memcpy(dout_t.data() + o * ld + b * P, dout + ((n0 + b) * s.OC + o) * P, P * sizeof(float));
      }
    });
    if (dweight) {
      // dweight[OC, CKK] += dout_t[OC, nb*P] cols[CKK, nb*P]^T   (blocks added in order)
      im2col_block(cols.data(), x, n0, nb, s);
      sgemm(false, true, s.OC, CKK, ld, dout_t.data(), ld, cols.data(), ld, dweight, CKK, true);
    }
    if (dx) {
      // dcols[CKK, nb*P] = weight[OC, CKK]^T dout_t[OC, nb*P]  (reuses the panel), then col2im
      sgemm(true, false, CKK, ld, s.OC, weight, CKK, dout_t.data(), ld, cols.data(), ld, false);
      col2im_block(dx, cols.data(), n0, nb, s);
    }
  }
}

// ---------------------------------------------------------------------------
// Plain twins: the formula in the header, looped directly, in double.

void conv2d_forward_ref(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s) {
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
          out[((n * s.OC + o) * OH + oy) * OW + ox] = static_cast<float>(acc);
        }
}

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

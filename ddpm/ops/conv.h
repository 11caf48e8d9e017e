// ops/conv.h: 2-D convolution, NCHW, square kernel, zero padding.   (PyTorch nn.Conv2d)
//
//   out[n, o, y, x] = bias[o] + sum over c, i, j of
//                     weight[o, c, i, j] * in[n, c, y*stride + i - pad, x*stride + j - pad]
//   (a cross-correlation, as in PyTorch: the kernel is not flipped; in[...] outside
//   the image is 0)
//   x: [N, C, H, W], weight: [OC, C, K, K], bias: [OC], out: [N, OC, OH, OW],
//   OH = (H + 2 pad - K) / stride + 1, OW likewise, P = OH * OW.
// The U-Net uses k=3 pad=1 stride 1, k=3 pad=1 stride 2 (Downsample) and k=1 pad=0;
// any K >= 1, stride >= 1 and pad >= 0 work.
//
// Computed as one GEMM per image, images in parallel (cols_n is image n's im2col
// matrix [C*K*K, P]):
//   forward          out_n[OC, P]       = weight[OC, C*K*K] cols_n          (+ bias)
//   backward weight  dweight[OC, C*K*K] += sum over n of dout_n[OC, P] cols_n^T
//   backward data    dx_n += col2im(weight^T dout_n)
//   backward bias    dbias[o]           += sum over n, p of dout[n, o, p]
// cols_n is built only where it must be:
//   - 1x1, stride 1, no padding: cols_n is x_n itself.
//   - stride 1 with pad <= K-1 (every 3x3 conv of the U-Net but Downsample): an
//     implicit GEMM. The zero-padded image, read at K*K shifted offsets, IS cols_n
//     (see ImplicitConv in conv.cpp); backward-data is then the stride-1 convolution
//     of dout with the flipped kernel, the same implicit GEMM.
//   - otherwise (stride 2): an explicit im2col panel per image, and col2im.
// Determinism: every image is computed the same way whichever thread runs it; the sum
// over the batch in dweight runs in a fixed number of partial sums over image blocks
// (conv2d_images_per_block, a function of N only) added in block order, and dbias sums
// images in order. So results do not depend on the thread count.
// Caches nothing beyond its inputs.
#pragma once

#include "ddpm/core/tape.h"

namespace ddpm {

struct Conv2dSize {
  int64_t N, C, H, W;  // input
  int64_t OC, K, stride, pad;
  int64_t OH() const { return (H + 2 * pad - K) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - K) / stride + 1; }
};

// bias may be null. In backward any of dx, dweight, dbias may be null (not wanted);
// the others are added into (+=).
void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dSize& s);
void conv2d_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     const Conv2dSize& s);
// Plain seven-deep loops accumulating in double: the oracle for the two above. The forward
// twin is instantiated for T = float and T = double (the gradient checks difference it in double).
template <typename T>
void conv2d_forward_ref(T* out, const T* x, const T* weight, const T* bias, const Conv2dSize& s);
void conv2d_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, const Conv2dSize& s);

// How many images one partial sum of dweight covers (>= 1; at most 8 partials).
// Exposed so tests can make sure they cover the multi-block path.
int64_t conv2d_images_per_block(const Conv2dSize& s);

// bias may be a null Var.
Var conv2d(Tape& tape, const Var& x, const Var& weight, const Var& bias, int64_t stride, int64_t pad);

// ---------------------------------------------------------------------------
// Inference: a direct convolution of one image that saves nothing for backward, reads
// its input from tap planes (below) and fuses what the tape keeps apart:
//   out[o, p] = residual[o, p] + ((acc[o, p] + bias[o]) + temb[o])
//   acc[o, p] = sum over c, then taps (i, j) in order, of weight[o, c, i, j] * in[c][i * row_step + j * col_step + p]
// with temb and residual optional (the ResBlock's time-embedding add and skip add).
// Each acc is one FMA chain in the forward pass's k = (c, i, j) order starting at 0,
// and the bias, temb and residual adds are the ones conv2d, add and add do in that
// order, so the values are bit-identical to conv2d (then add(h, temb), add(skip, h)).
// No packing of the image: the 3x3 taps are read straight from the planes, with
// vectors along the output positions p = oy*OW + ox, in blocks of kConvMR output
// channels (their weights pre-packed once: conv2d_pack_weights).
//
// Tap planes: what the kernel reads for input channel c, a block of
// ConvPlanes::channel_floats() floats at in[c]. Output position p reads tap (i, j) at
//   in[c][i * row_step + j * col_step + p]
// and every value that falls into the zero padding is a stored 0:
//   1x1, stride 1, pad 0   the image itself ([H, W], row_step = col_step = 0): no copy.
//   3x3, stride 1, pad 1   3 planes of (H + 2) rows of W, one per column tap j:
//                          plane_j[(y + 1) * W + x] = in[y, x + j - 1] (0 outside the image),
//                          rows -1 and H zero; row_step = W, col_step = plane_floats.
//                          (Each column shift is its own plane, so rows need no junk
//                          columns, unlike ImplicitConv's padded grid.)
//   3x3, stride 2, pad 1   9 planes of OH * OW, one per tap (an im2col):
//                          plane_(i, j)[oy * OW + ox] = in[2 oy + i - 1, 2 ox + j - 1];
//                          row_step = 3 * plane_floats, col_step = plane_floats.
// Every plane has kConvSlack floats of slack past its end: the last vector of a row of
// positions reads up to a vector past P. A 1x1 input needs the same slack after its
// last channel (the kernel only stores the positions < P).
struct ConvPlanes {
  int64_t C, H, W, K, stride, pad;  // the input image and the convolution
  int64_t OH, OW;
  int64_t planes = 1;        // per channel: 1, 3 or 9
  int64_t plane_floats = 0;  // floats per plane, slack included
  int64_t row_step = 0, col_step = 0;
  int64_t P() const { return OH * OW; }
  int64_t channel_floats() const { return planes * plane_floats; }
};
constexpr int64_t kConvSlack = 32;
// Checks that (K, stride, pad) is one of the three above.
ConvPlanes conv2d_planes(int64_t C, int64_t H, int64_t W, int64_t K, int64_t stride, int64_t pad);
// One channel's planes (dst, channel_floats() floats) from its [H, W] image; not for 1x1.
void conv2d_write_planes(float* dst, const float* image, const ConvPlanes& p);
// The same from an [H/2, W/2] image, upsampled x2 nearest on the way (the U-Net's
// Upsample: upsample_nearest2x then conv2d): the upsampled image is never stored.
void conv2d_write_planes_upsampled(float* dst, const float* image, const ConvPlanes& p);
// A stride-1 3x3 input's plane 1 holds the image itself as [H, W] (rows 0..H-1), at
// conv2d_center_plane; plane 0 holds it one float later, plane 2 one float earlier. A
// producer may store each value three times there (conv2d_center_plane - plane_floats + 1,
// center, center + plane_floats - 1) and then zero what falls outside the image
// (conv2d_zero_planes_border: column -1 of plane 0, column W of plane 2, rows -1 and H).
float* conv2d_center_plane(float* dst, const ConvPlanes& p);
void conv2d_zero_planes_border(float* dst, const ConvPlanes& p);
// The plain twin: writes every tap of every output position from the formulas above
// (positions outside the image read 0), which covers every stored float but the slack.
void conv2d_write_planes_ref(float* dst, const float* image, const ConvPlanes& p, bool upsampled);

// weight [OC, CKK] (CKK = C*K*K) packed for the kernel, OC * CKK floats: row panels of
// kConvMR output channels (the last rows in panels of 4, 2, 1), each stored [CKK, rows], so
// one panel's weights for one k are consecutive floats. The kernel broadcasts them against
// vectors of positions; for the last few positions of an image (fewer than a vector: 7x7
// is 3 vectors + 1) it loads them as a vector of channels instead.
extern const int kConvMR;
void conv2d_pack_weights(float* packed, const float* weight, int64_t OC, int64_t CKK);

struct ConvEpilogue {
  const float* temb = nullptr;      // [OC], or null
  const float* residual = nullptr;  // [OC, P], or null (may be out itself: in place)
};
// out [OC, P]; in: C channel pointers to tap planes (or the image, for 1x1). One thread:
// the U-Net's inference pass runs images in parallel, each on one thread.
void conv2d_planes_forward(float* out, const float* const* in, const ConvPlanes& p, const float* packed_weight,
                           const float* bias, int64_t OC, const ConvEpilogue& e = {});
// The U-Net's Upsample, conv3x3(upsample_nearest2x(x)), in 2.25x fewer multiplies: output
// pixel (2y + a, 2x + b) sees x only at rows y - 1 + a + u and columns x - 1 + b + v,
// u, v in {0, 1}, so each of the four phases (a, b) is a 2x2 convolution of x itself with
// summed weights (Shi et al. 2016's sub-pixel view; a = 0: row tap i = 0 alone, then
// i = 1 and 2 together; a = 1: i = 0 and 1, then i = 2; likewise the columns):
//   out[o, 2y + a, 2x + b] = bias[o] + sum over c, u, v of We_ab[o, c, u, v] x[c, y - 1 + a + u, x - 1 + b + v]
// 4 C multiply-adds per output pixel instead of 9 C. The summed weights (in double,
// rounded once) and the shorter chains round differently from conv2d on the upsampled
// image: within float rounding of either, not bit for bit (its oracle is conv2d_forward_ref
// on upsample_nearest2x(x), tests/ops/test_conv.cpp). in: the stride-1 3x3 planes of
// x [C, H, W] (conv2d_planes(C, H, W, 3, 1, 1)); out [OC, 2H, 2W]. Weights:
// conv2d_pack_upsampled_weights, 16 * OC * C floats.
void conv2d_pack_upsampled_weights(float* packed, const float* weight, int64_t OC, int64_t C);
void conv2d_upsampled_forward(float* out, const float* const* in, const ConvPlanes& p, const float* packed_weight,
                              const float* bias, int64_t OC);

// Plain loops in double from the unpacked weight [OC, C*K*K]: the oracle.
void conv2d_planes_forward_ref(float* out, const float* const* in, const ConvPlanes& p, const float* weight,
                               const float* bias, int64_t OC, const ConvEpilogue& e = {});

}  // namespace ddpm

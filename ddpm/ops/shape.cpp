#include "ddpm/ops/shape.h"

#include <cstring>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Nearest 2x upsampling: out[r, y, x] = in[r, y/2, x/2] on the [2H, 2W] plane r.

void upsample_nearest2x_forward(float* out, const float* x, int64_t NC, int64_t H, int64_t W) {
  parallel_for(NC, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* in = x + r * H * W;
      float* o = out + r * 4 * H * W;
      for (int64_t y = 0; y < H; y++) {
        float* row0 = o + (2 * y) * (2 * W);  // output rows 2y and 2y+1 repeat input row y
        for (int64_t i = 0; i < W; i++) row0[2 * i] = row0[2 * i + 1] = in[y * W + i];
        std::memcpy(row0 + 2 * W, row0, 2 * W * sizeof(float));
      }
    }
  });
}

void upsample_nearest2x_backward(float* dx, const float* dout, int64_t NC, int64_t H, int64_t W) {
  parallel_for(NC, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* d = dout + r * 4 * H * W;
      float* g = dx + r * H * W;
      for (int64_t y = 0; y < H; y++) {
        const float* row0 = d + (2 * y) * (2 * W);
        const float* row1 = row0 + 2 * W;
        // out[2y + a, 2i + b] = in[y, i] for a, b in {0, 1}
        for (int64_t i = 0; i < W; i++)
          g[y * W + i] += (row0[2 * i] + row0[2 * i + 1]) + (row1[2 * i] + row1[2 * i + 1]);
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Channel concat: image n of out is a's Ca*HW values, then b's Cb*HW values.

void concat_channels_forward(float* out, const float* a, const float* b, int64_t N, int64_t Ca, int64_t Cb,
                             int64_t HW) {
  const int64_t na = Ca * HW, nb = Cb * HW;
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      std::memcpy(out + n * (na + nb), a + n * na, na * sizeof(float));
      std::memcpy(out + n * (na + nb) + na, b + n * nb, nb * sizeof(float));
    }
  });
}

void concat_channels_backward(float* da, float* db, const float* dout, int64_t N, int64_t Ca, int64_t Cb,
                              int64_t HW) {
  const int64_t na = Ca * HW, nb = Cb * HW;
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      const float* d = dout + n * (na + nb);
      // out[n] = [a[n] | b[n]]
      if (da)
        for (int64_t i = 0; i < na; i++) da[n * na + i] += d[i];
      if (db)
        for (int64_t i = 0; i < nb; i++) db[n * nb + i] += d[na + i];
    }
  });
}

// ---------------------------------------------------------------------------
// Tape ops

Var upsample_nearest2x(Tape& tape, const Var& x) {
  ProfileScope timer(ProfileOp::elementwise);
  const Shape& s = x->value.shape();
  DDPM_CHECK(s.size() == 4, "upsample_nearest2x: x " << x->value.shape_str() << " must be [N, C, H, W]");
  const int64_t NC = s[0] * s[1], H = s[2], W = s[3];
  Tensor out = Tensor::empty({s[0], s[1], 2 * H, 2 * W});
  upsample_nearest2x_forward(out.data(), x->value.data(), NC, H, W);
  return tape.record("upsample_nearest2x", out, {x}, [x, NC, H, W](Node& o) {
    ProfileScope timer(ProfileOp::elementwise);
    upsample_nearest2x_backward(x->grad_ref().data(), o.grad.data(), NC, H, W);
  });
}

Var concat_channels(Tape& tape, const Var& a, const Var& b) {
  ProfileScope timer(ProfileOp::elementwise);
  const Shape& sa = a->value.shape();
  const Shape& sb = b->value.shape();
  DDPM_CHECK(sa.size() == 4 && sb.size() == 4 && sa[0] == sb[0] && sa[2] == sb[2] && sa[3] == sb[3],
             "concat_channels: a " << a->value.shape_str() << " and b " << b->value.shape_str()
                                   << " must be [N, Ca, H, W] and [N, Cb, H, W] with the same N, H and W");
  const int64_t N = sa[0], Ca = sa[1], Cb = sb[1], HW = sa[2] * sa[3];
  Tensor out = Tensor::empty({N, Ca + Cb, sa[2], sa[3]});
  concat_channels_forward(out.data(), a->value.data(), b->value.data(), N, Ca, Cb, HW);
  return tape.record("concat_channels", out, {a, b}, [a, b, N, Ca, Cb, HW](Node& o) {
    ProfileScope timer(ProfileOp::elementwise);
    concat_channels_backward(a->requires_grad ? a->grad_ref().data() : nullptr,
                             b->requires_grad ? b->grad_ref().data() : nullptr, o.grad.data(), N, Ca, Cb, HW);
  });
}

}  // namespace ddpm

#include "ddpm/ops/pool.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// ReLU: out = max(x, 0)

void relu_forward(float* out, const float* x, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
  }, 4096);
}

void relu_backward(float* dx, const float* dout, const float* x, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
      if (x[i] > 0.0f) dx[i] += dout[i];  // out = x where x > 0
  }, 4096);
}

template <typename T>
void relu_forward_ref(T* out, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = x[i] > T(0) ? x[i] : T(0);
}
template void relu_forward_ref<float>(float*, const float*, int64_t);
template void relu_forward_ref<double>(double*, const double*, int64_t);

void relu_backward_ref(float* dx, const float* dout, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dout[i] : 0.0f;
}

// ---------------------------------------------------------------------------
// Max pool 2x2: out[p, y, x] = max_{i, j} in[p, 2y + i, 2x + j]

void max_pool2x2_forward(float* out, uint8_t* argmax, const float* x, int64_t NC, int64_t H, int64_t W) {
  const int64_t OH = H / 2, OW = W / 2;
  parallel_for(NC, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++)
      for (int64_t y = 0; y < OH; y++)
        for (int64_t xo = 0; xo < OW; xo++) {
          const float* in = x + (p * H + 2 * y) * W + 2 * xo;
          const float v[4] = {in[0], in[1], in[W], in[W + 1]};
          int best = 0;
          for (int k = 1; k < 4; k++)
            if (v[k] > v[best]) best = k;  // strict: the first max wins ties
          out[(p * OH + y) * OW + xo] = v[best];
          argmax[(p * OH + y) * OW + xo] = static_cast<uint8_t>(best);
        }
  });
}

void max_pool2x2_backward(float* dx, const float* dout, const uint8_t* argmax, int64_t NC, int64_t H, int64_t W) {
  const int64_t OH = H / 2, OW = W / 2;
  parallel_for(NC, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++)
      for (int64_t y = 0; y < OH; y++)
        for (int64_t xo = 0; xo < OW; xo++) {
          const int64_t o = (p * OH + y) * OW + xo;
          const int k = argmax[o];
          // out = in[2y + i, 2x + j] at the argmax (i, j) = (k / 2, k % 2)
          dx[(p * H + 2 * y + k / 2) * W + 2 * xo + k % 2] += dout[o];
        }
  });
}

template <typename T>
void max_pool2x2_forward_ref(T* out, const T* x, int64_t NC, int64_t H, int64_t W) {
  for (int64_t p = 0; p < NC; p++)
    for (int64_t y = 0; y < H / 2; y++)
      for (int64_t xo = 0; xo < W / 2; xo++) {
        T m = x[(p * H + 2 * y) * W + 2 * xo];
        for (int i = 0; i < 2; i++)
          for (int j = 0; j < 2; j++) m = std::max(m, x[(p * H + 2 * y + i) * W + 2 * xo + j]);
        out[(p * (H / 2) + y) * (W / 2) + xo] = m;
      }
}
template void max_pool2x2_forward_ref<float>(float*, const float*, int64_t, int64_t, int64_t);
template void max_pool2x2_forward_ref<double>(double*, const double*, int64_t, int64_t, int64_t);

void max_pool2x2_backward_ref(float* dx, const float* dout, const float* x, int64_t NC, int64_t H, int64_t W) {
  for (int64_t p = 0; p < NC; p++)
    for (int64_t y = 0; y < H / 2; y++)
      for (int64_t xo = 0; xo < W / 2; xo++) {
        int64_t best = (p * H + 2 * y) * W + 2 * xo;
        for (int i = 0; i < 2; i++)
          for (int j = 0; j < 2; j++) {
            const int64_t at = (p * H + 2 * y + i) * W + 2 * xo + j;
            if (x[at] > x[best]) best = at;
          }
        dx[best] += dout[(p * (H / 2) + y) * (W / 2) + xo];
      }
}

// ---------------------------------------------------------------------------
// Tape ops

Var relu(Tape& tape, const Var& x) {
  const int64_t n = x->value.numel();
  Tensor out(x->value.shape());
  relu_forward(out.data(), x->value.data(), n);
  return tape.record("relu", out, {x}, [x, n](Node& o) {
    relu_backward(x->grad_ref().data(), o.grad.data(), x->value.data(), n);
  });
}

Var max_pool2x2(Tape& tape, const Var& x) {
  const Shape& s = x->value.shape();
  DDPM_CHECK(s.size() == 4 && s[2] % 2 == 0 && s[3] % 2 == 0,
             "max_pool2x2: input " << to_string(s) << " must be [N, C, H, W] with H and W even");
  const int64_t NC = s[0] * s[1], H = s[2], W = s[3];
  Tensor out({s[0], s[1], H / 2, W / 2});
  auto argmax = std::make_shared<std::vector<uint8_t>>(out.numel());
  max_pool2x2_forward(out.data(), argmax->data(), x->value.data(), NC, H, W);
  return tape.record("max_pool2x2", out, {x}, [x, argmax, NC, H, W](Node& o) {
    max_pool2x2_backward(x->grad_ref().data(), o.grad.data(), argmax->data(), NC, H, W);
  });
}

}  // namespace ddpm

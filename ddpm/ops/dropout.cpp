#include "ddpm/ops/dropout.h"

#include <algorithm>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"

namespace ddpm {

// keep[i] = uniform(key, first + i) >= p;  out[i] = keep[i] ? x[i] * scale : 0,  scale = 1 / (1 - p)

// The uniforms come kUniforms at a time from fill_uniform (the same values as
// uniform(key, i), cheaper in bulk).
constexpr int64_t kUniforms = 1024;

void dropout_forward(float* out, const float* x, int64_t n, float p, RngKey key, uint64_t first) {
  const float scale = 1.0f / (1.0f - p);
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    float u[kUniforms];
    for (int64_t b = i0; b < i1; b += kUniforms) {
      const int64_t len = std::min(kUniforms, i1 - b);
      fill_uniform(u, len, key, first + static_cast<uint64_t>(b));
      for (int64_t j = 0; j < len; j++) out[b + j] = u[j] >= p ? x[b + j] * scale : 0.0f;
    }
  }, 4096);
}

void dropout_backward(float* dx, const float* dout, int64_t n, float p, RngKey key, uint64_t first) {
  const float scale = 1.0f / (1.0f - p);
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    float u[kUniforms];
    for (int64_t b = i0; b < i1; b += kUniforms) {
      const int64_t len = std::min(kUniforms, i1 - b);
      fill_uniform(u, len, key, first + static_cast<uint64_t>(b));
      for (int64_t j = 0; j < len; j++)
        if (u[j] >= p) dx[b + j] += dout[b + j] * scale;  // out = keep ? x * scale : 0
    }
  }, 4096);
}

Var dropout(Tape& tape, const Var& x, float p, RngKey key, bool training, uint64_t first) {
  DDPM_CHECK(p >= 0.0f && p < 1.0f, "dropout: p = " << p << " must be in [0, 1) (x " << x->value.shape_str() << ")");
  if (p == 0.0f || !training) return x;
  ProfileScope timer(ProfileOp::elementwise);
  const int64_t n = x->value.numel();
  Tensor out = Tensor::empty(x->value.shape());
  dropout_forward(out.data(), x->value.data(), n, p, key, first);
  return tape.record("dropout", out, {x}, [x, n, p, key, first](Node& o) {
    ProfileScope timer(ProfileOp::elementwise);
    dropout_backward(x->grad_ref().data(), o.grad.data(), n, p, key, first);
  });
}

}  // namespace ddpm

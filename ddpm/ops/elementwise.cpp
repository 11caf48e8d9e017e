#include "ddpm/ops/elementwise.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"
#include "ddpm/core/simd.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// SiLU: out = x * s, s = sigmoid(x) = 1 / (1 + exp(-x))
// d out / dx = s + x * s * (1 - s) = s * (1 + x * (1 - s))

// Vector loops with simd::silu and simd::exp (at most 2 ulp, see simd.h). The tail goes
// through the same vector code on a zero-padded copy, so every element gets the same
// arithmetic wherever a thread's range starts: results do not depend on the thread count.
namespace {

simd::Vec silu_grad_vec(simd::Vec dout, simd::Vec x) {
  using namespace simd;
  const Vec one = set1(1.0f);
  Vec s = div(one, add(one, exp(sub(zero(), x))));
  return mul(dout, mul(s, mul_add(x, sub(one, s), one)));  // dout * s * (1 + x * (1 - s)), out = x * s
}

}  // namespace

void silu_forward_serial(float* out, const float* x, int64_t n) {
  using namespace simd;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(out + i, simd::silu(load(x + i)));
  if (i < n) {  // tail, zero-padded
    float xb[kLanes] = {}, ob[kLanes];
    std::copy(x + i, x + n, xb);
    store(ob, simd::silu(load(xb)));
    std::copy(ob, ob + (n - i), out + i);
  }
}

void silu_forward(float* out, const float* x, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) { silu_forward_serial(out + i0, x + i0, i1 - i0); }, 4096);
}

void silu_backward(float* dx, const float* dout, const float* x, int64_t n) {
  using namespace simd;
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) store(dx + i, add(load(dx + i), silu_grad_vec(load(dout + i), load(x + i))));
    if (i < i1) {  // tail, zero-padded
      float db[kLanes] = {}, xb[kLanes] = {}, gb[kLanes];
      std::copy(dout + i, dout + i1, db);
      std::copy(x + i, x + i1, xb);
      store(gb, silu_grad_vec(load(db), load(xb)));
      for (int64_t j = 0; j < i1 - i; j++) dx[i + j] += gb[j];
    }
  }, 4096);
}

template <typename T>
void silu_forward_ref(T* out, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = static_cast<T>(x[i] / (1.0 + std::exp(-static_cast<double>(x[i]))));
}
template void silu_forward_ref<float>(float*, const float*, int64_t);
template void silu_forward_ref<double>(double*, const double*, int64_t);

void silu_backward_ref(float* dx, const float* dout, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    dx[i] += static_cast<float>(dout[i] * s * (1.0 + x[i] * (1.0 - s)));
  }
}

// ---------------------------------------------------------------------------
// Channel broadcast: out[n, c, p] = a[n, c, p] + b[n, c]

void add_channel_forward(float* out, const float* a, const float* b, int64_t NC, int64_t HW) {
  parallel_for(NC, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
      for (int64_t p = 0; p < HW; p++) out[r * HW + p] = a[r * HW + p] + b[r];
  });
}

void add_channel_backward(float* db, const float* dout, int64_t NC, int64_t HW) {
  // db[n, c] += sum over p of dout[n, c, p]
  parallel_for(NC, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) db[r] += ddpm::sum(dout + r * HW, HW);
  });
}

// y += x over n elements, threads splitting the range (elementwise: any split gives
// the same values).
static void axpy_parallel(float* y, const float* x, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) { axpy(y + i0, 1.0f, x + i0, i1 - i0); }, 16384);
}

// ---------------------------------------------------------------------------
// Tape ops

Var add(Tape& tape, const Var& a, const Var& b) {
  ProfileScope timer(ProfileOp::elementwise);
  const Shape& sa = a->value.shape();
  const Shape& sb = b->value.shape();
  const int64_t n = a->value.numel();
  if (sa == sb) {
    Tensor out = Tensor::empty(sa);
    const float *pa = a->value.data(), *pb = b->value.data();
    float* po = out.data();
    parallel_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; i++) po[i] = pa[i] + pb[i];
    }, 16384);
    return tape.record("add", out, {a, b}, [a, b, n](Node& o) {
      ProfileScope timer(ProfileOp::elementwise);
      if (a->requires_grad) axpy_parallel(a->grad_ref().data(), o.grad.data(), n);  // out = a + b
      if (b->requires_grad) axpy_parallel(b->grad_ref().data(), o.grad.data(), n);
    });
  }
  DDPM_CHECK(sa.size() == 4 && sb.size() == 2 && sa[0] == sb[0] && sa[1] == sb[1],
             "add: shapes " << to_string(sa) << " and " << to_string(sb)
                            << " must match, or be [N, C, H, W] and [N, C]");
  const int64_t NC = sa[0] * sa[1], HW = sa[2] * sa[3];
  Tensor out = Tensor::empty(sa);
  add_channel_forward(out.data(), a->value.data(), b->value.data(), NC, HW);
  return tape.record("add", out, {a, b}, [a, b, n, NC, HW](Node& o) {
    ProfileScope timer(ProfileOp::elementwise);
    if (a->requires_grad) axpy_parallel(a->grad_ref().data(), o.grad.data(), n);  // out = a + b[n, c]
    if (b->requires_grad) add_channel_backward(b->grad_ref().data(), o.grad.data(), NC, HW);
  });
}

Var mul(Tape& tape, const Var& a, const Var& b) {
  ProfileScope timer(ProfileOp::elementwise);
  DDPM_CHECK(a->value.shape() == b->value.shape(),
             "mul: shapes " << a->value.shape_str() << " and " << b->value.shape_str() << " must match");
  const int64_t n = a->value.numel();
  Tensor out = Tensor::empty(a->value.shape());
  for (int64_t i = 0; i < n; i++) out[i] = a->value[i] * b->value[i];
  return tape.record("mul", out, {a, b}, [a, b, n](Node& o) {
    ProfileScope timer(ProfileOp::elementwise);
    // out = a * b  =>  da += dout * b,  db += dout * a
    if (a->requires_grad) {
      float* da = a->grad_ref().data();
      for (int64_t i = 0; i < n; i++) da[i] += o.grad[i] * b->value[i];
    }
    if (b->requires_grad) {
      float* db = b->grad_ref().data();
      for (int64_t i = 0; i < n; i++) db[i] += o.grad[i] * a->value[i];
    }
  });
}

Var scale(Tape& tape, const Var& a, float s) {
  ProfileScope timer(ProfileOp::elementwise);
  const int64_t n = a->value.numel();
  Tensor out = Tensor::empty(a->value.shape());
  for (int64_t i = 0; i < n; i++) out[i] = s * a->value[i];
  return tape.record("scale", out, {a}, [a, s, n](Node& o) {
    ProfileScope timer(ProfileOp::elementwise);
    axpy(a->grad_ref().data(), s, o.grad.data(), n);  // out = s * a
  });
}

Var silu(Tape& tape, const Var& x) {
  ProfileScope timer(ProfileOp::silu);
  const int64_t n = x->value.numel();
  Tensor out = Tensor::empty(x->value.shape());
  silu_forward(out.data(), x->value.data(), n);
  return tape.record("silu", out, {x}, [x, n](Node& o) {
    ProfileScope timer(ProfileOp::silu);
    silu_backward(x->grad_ref().data(), o.grad.data(), x->value.data(), n);
  });
}

Var sum(Tape& tape, const Var& x) {
  const int64_t n = x->value.numel();
  Tensor out({1});
  out[0] = static_cast<float>(sum_ref(x->value.data(), n));  // double accumulation: the loss is read by people
  return tape.record("sum", out, {x}, [x, n](Node& o) {
    float* dx = x->grad_ref().data();
    for (int64_t i = 0; i < n; i++) dx[i] += o.grad[0];  // out = sum x
  });
}

Var mean(Tape& tape, const Var& x) {
  const int64_t n = x->value.numel();
  DDPM_CHECK(n > 0, "mean: empty tensor " << x->value.shape_str());
  Tensor out({1});
  out[0] = static_cast<float>(sum_ref(x->value.data(), n) / n);
  return tape.record("mean", out, {x}, [x, n](Node& o) {
    float* dx = x->grad_ref().data();
    const float g = o.grad[0] / static_cast<float>(n);
    for (int64_t i = 0; i < n; i++) dx[i] += g;  // out = (1/n) sum x
  });
}

Var mse_loss(Tape& tape, const Var& a, const Var& b) {
  DDPM_CHECK(a->value.shape() == b->value.shape(),
             "mse_loss: shapes " << a->value.shape_str() << " and " << b->value.shape_str() << " must match");
  const int64_t n = a->value.numel();
  DDPM_CHECK(n > 0, "mse_loss: empty tensors");
  double acc = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double d = static_cast<double>(a->value[i]) - b->value[i];
    acc += d * d;
  }
  Tensor out({1});
  out[0] = static_cast<float>(acc / n);
  return tape.record("mse_loss", out, {a, b}, [a, b, n](Node& o) {
    // out = (1/n) sum (a - b)^2  =>  da += (2/n) (a - b) dout,  db -= the same
    const float g = 2.0f * o.grad[0] / static_cast<float>(n);
    float* da = a->requires_grad ? a->grad_ref().data() : nullptr;
    float* db = b->requires_grad ? b->grad_ref().data() : nullptr;
    for (int64_t i = 0; i < n; i++) {
      float d = g * (a->value[i] - b->value[i]);
      if (da) da[i] += d;
      if (db) db[i] -= d;
    }
  });
}

}  // namespace ddpm

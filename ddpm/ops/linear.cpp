#include "ddpm/ops/linear.h"

#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/kernels.h"
#include "ddpm/core/profile.h"

namespace ddpm {

// ---------------------------------------------------------------------------
// Forward: out[n, o] = bias[o] + sum over i of x[n, i] weight[o, i]

void linear_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N, int64_t IN,
                    int64_t OUT) {
  // out[N, OUT] = x[N, IN] weight[OUT, IN]^T
  sgemm(false, true, N, OUT, IN, x, IN, weight, IN, out, OUT, false);
  if (bias)
    for (int64_t n = 0; n < N; n++)
      for (int64_t o = 0; o < OUT; o++) out[n * OUT + o] += bias[o];
}

// Backward of out[n, o] = bias[o] + sum over i of x[n, i] weight[o, i]

void linear_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     int64_t N, int64_t IN, int64_t OUT) {
  // dx[N, IN] += dout[N, OUT] weight[OUT, IN]
  if (dx) sgemm(false, false, N, IN, OUT, dout, OUT, weight, IN, dx, IN, true);
  // dweight[OUT, IN] += dout[N, OUT]^T x[N, IN]
  if (dweight) sgemm(true, false, OUT, IN, N, dout, OUT, x, IN, dweight, IN, true);
  // dbias[o] += sum over n of dout[n, o], rows in order
  if (dbias)
    for (int64_t n = 0; n < N; n++) axpy(dbias, 1.0f, dout + n * OUT, OUT);
}

template <typename T>
void linear_forward_ref(T* out, const T* x, const T* weight, const T* bias, int64_t N, int64_t IN, int64_t OUT) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OUT; o++) {
      double acc = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < IN; i++) acc += static_cast<double>(x[n * IN + i]) * weight[o * IN + i];
      out[n * OUT + o] = static_cast<T>(acc);
    }
}
template void linear_forward_ref<float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t);
template void linear_forward_ref<double>(double*, const double*, const double*, const double*, int64_t, int64_t,
                                         int64_t);

void linear_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, int64_t N, int64_t IN, int64_t OUT) {
  std::vector<double> dx_acc(N * IN, 0.0), dw_acc(OUT * IN, 0.0), db_acc(OUT, 0.0);
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OUT; o++) {
      const double g = dout[n * OUT + o];
      db_acc[o] += g;  // out = bias[o] + ...
      for (int64_t i = 0; i < IN; i++) {
        // out += x[n, i] * weight[o, i]
        dx_acc[n * IN + i] += g * weight[o * IN + i];
        dw_acc[o * IN + i] += g * x[n * IN + i];
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

Var linear(Tape& tape, const Var& x, const Var& weight, const Var& bias) {
  const Tensor& xv = x->value;
  const Tensor& wv = weight->value;
  DDPM_CHECK(xv.dim() == 2, "linear: input " << xv.shape_str() << " must be 2-D [N, IN]");
  DDPM_CHECK(wv.dim() == 2 && wv.size(1) == xv.size(1),
             "linear: weight " << wv.shape_str() << " must be [OUT, " << xv.size(1) << "] for input "
                               << xv.shape_str());
  const int64_t N = xv.size(0), IN = xv.size(1), OUT = wv.size(0);
  if (bias) {
    DDPM_CHECK(bias->value.shape() == Shape{OUT},
               "linear: bias " << bias->value.shape_str() << " must be [" << OUT << "] for weight "
                               << wv.shape_str() << " (or pass a null Var for no bias)");
  }
  const double flops = 2.0 * N * IN * OUT;  // per GEMM; backward does two
  ProfileScope timer(ProfileOp::linear, flops);
  Tensor out = Tensor::empty({N, OUT});
  linear_forward(out.data(), xv.data(), wv.data(), bias ? bias->value.data() : nullptr, N, IN, OUT);
  return tape.record("linear", out, {x, weight, bias}, [x, weight, bias, N, IN, OUT, flops](Node& o) {
    ProfileScope timer(ProfileOp::linear, 2.0 * flops);
    float* dx = x->requires_grad ? x->grad_ref().data() : nullptr;
    float* dweight = weight->requires_grad ? weight->grad_ref().data() : nullptr;
    float* dbias = bias && bias->requires_grad ? bias->grad_ref().data() : nullptr;
    linear_backward(dx, dweight, dbias, o.grad.data(), x->value.data(), weight->value.data(), N, IN, OUT);
  });
}

}  // namespace ddpm

// ops/linear.h: out[N, OUT] = x[N, IN] weight[OUT, IN]^T + bias[OUT]   (PyTorch nn.Linear)
//
// Forward is one SGEMM (x times weight transposed). Backward:
//   dx[N, IN]        += dout[N, OUT] weight[OUT, IN]
//   dweight[OUT, IN] += dout[N, OUT]^T x[N, IN]
//   dbias[OUT]       += sum over N of dout
// Every sum runs in a fixed order (sgemm is bit-identical for any thread count; dbias
// adds rows in order). Caches nothing beyond its inputs.
#pragma once

#include "ddpm/core/tape.h"

namespace ddpm {

// bias may be null. In backward any of dx, dweight, dbias may be null (not wanted);
// the others are added into (+=).
void linear_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N, int64_t IN,
                    int64_t OUT);
void linear_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     int64_t N, int64_t IN, int64_t OUT);
// Plain loops accumulating in double: the oracle for the two above. The forward twin is
// instantiated for T = float and T = double (the gradient checks difference it in double).
template <typename T>
void linear_forward_ref(T* out, const T* x, const T* weight, const T* bias, int64_t N, int64_t IN, int64_t OUT);
void linear_backward_ref(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                         const float* weight, int64_t N, int64_t IN, int64_t OUT);

// x is [N, IN], weight [OUT, IN], bias [OUT] or a null Var; out is [N, OUT].
Var linear(Tape& tape, const Var& x, const Var& weight, const Var& bias);

}  // namespace ddpm

// ops/linear.h: out[N, OUT] = x[N, IN] weight[OUT, IN]^T + bias[OUT]   (PyTorch nn.Linear)
//
// Forward is one SGEMM (x times weight transposed). Backward:
//   dx[N, IN]        += dout[N, OUT] weight[OUT, IN]
//   dweight[OUT, IN] += dout[N, OUT]^T x[N, IN]
//   dbias[OUT]       += sum over N of dout
// Caches nothing beyond its inputs.
#pragma once

#include "ddpm/tape.h"

namespace ddpm {

// bias may be null. In backward any of dx, dweight, dbias may be null (not wanted).
void linear_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N, int64_t IN,
                    int64_t OUT);
void linear_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                     int64_t N, int64_t IN, int64_t OUT);

// bias may be a null Var.
Var linear(Tape& tape, const Var& x, const Var& weight, const Var& bias);

}  // namespace ddpm

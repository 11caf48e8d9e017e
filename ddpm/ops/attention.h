// ops/attention.h: single-head spatial self-attention over the H*W positions.
//
//   q, k, v: [N, C, H, W]; P = H*W positions; for each image n:
//   S[i, j] = sum over c of q[c, i] k[c, j] / sqrt(C)      [P, P]   (Q^T K / sqrt(C))
//   A[i, :] = softmax(S[i, :])                              [P, P]
//   out[c, i] = sum over j of A[i, j] v[c, j]               [C, P]   (V A^T)
// Caches the attention matrix A, [N, P, P], for backward. The AttnBlock around it
// (GroupNorm, the q/k/v and output 1x1 convs, the residual) is built in nn.
#pragma once

#include "ddpm/tape.h"

namespace ddpm {

void attention_forward(float* out, float* A, const float* q, const float* k, const float* v, int64_t N, int64_t C,
                       int64_t P);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* A, const float* q,
                        const float* k, const float* v, int64_t N, int64_t C, int64_t P);

Var attention(Tape& tape, const Var& q, const Var& k, const Var& v);

}  // namespace ddpm

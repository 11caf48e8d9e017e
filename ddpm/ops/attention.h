// ops/attention.h: single-head spatial self-attention over the H*W positions.
//
//   q, k, v: [N, C, H, W]; P = H*W positions; for each image n (Q, K, V are its [C, P]):
//   S[i, j] = sum over c of q[c, i] k[c, j] / sqrt(C)      [P, P]   (Q^T K / sqrt(C))
//   A[i, :] = softmax(S[i, :])                              [P, P]   (the row max is
//                                                                     subtracted first)
//   out[c, i] = sum over j of A[i, j] v[c, j]               [C, P]   (V A^T)
// The softmax uses simd::exp (at most 2 ulp) in float lanes.
// Caches the attention matrix A, [N, P, P], for backward. The AttnBlock around it
// (GroupNorm, the q/k/v and output 1x1 convs, the residual) is built in nn.
// Reference: the AttnBlock of the DDPM TF code / PyTorch's
//   softmax(einsum("bci,bcj->bij", q, k) * C**-0.5, dim=-1), out = einsum("bij,bcj->bci", A, v).
//
// Backward, per image (dout is [C, P]):
//   dV = dout A                                    out = V A^T
//   dA = dout^T V                                  [P, P]
//   dS = A o (dA - rowsum(dA o A))                 softmax, row by row (o: elementwise)
//   dQ = K dS^T / sqrt(C),   dK = Q dS / sqrt(C)   S = Q^T K / sqrt(C)
// The matrix products are sgemm calls. Threads split the images; an image's sgemm runs
// on the pool itself when there is one image. sgemm and the row loops sum in a fixed
// order, so the results are bit-identical for any thread count.
#pragma once

#include "ddpm/core/tape.h"

namespace ddpm {

void attention_forward(float* out, float* A, const float* q, const float* k, const float* v, int64_t N, int64_t C,
                       int64_t P);
// Adds into dq, dk, dv; any of them may be null (not wanted).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* A, const float* q,
                        const float* k, const float* v, int64_t N, int64_t C, int64_t P);

// Plain-loop twins in double, one thread: the test oracle. The forward twin is instantiated
// for T = float and T = double (the gradient checks difference it in double).
template <typename T>
void attention_forward_ref(T* out, T* A, const T* q, const T* k, const T* v, int64_t N, int64_t C, int64_t P);
void attention_backward_ref(float* dq, float* dk, float* dv, const float* dout, const float* A, const float* q,
                            const float* k, const float* v, int64_t N, int64_t C, int64_t P);

// q, k, v: the same [N, C, H, W] shape, C >= 1. Returns [N, C, H, W].
Var attention(Tape& tape, const Var& q, const Var& k, const Var& v);

}  // namespace ddpm

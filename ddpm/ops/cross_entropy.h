// ops/cross_entropy.h: softmax cross-entropy for classification.
//
//   cross_entropy(logits, labels) = (1/N) sum_n -log softmax(logits[n])[labels[n]]
//                                 = (1/N) sum_n (logsumexp(logits[n]) - logits[n, labels[n]])
//   logits [N, K], labels N values in 0..K-1, out [1]    (PyTorch F.cross_entropy, 'mean')
//   d out / d logits[n, k] = (softmax(logits[n])[k] - [k == labels[n]]) / N
// The softmax is computed with the row max subtracted, accumulating in double.
// Caches the softmax probabilities [N, K] for backward.
//
//   softmax_forward(probs, logits, N, K) is the same row softmax, for inference.
#pragma once

#include <cstdint>
#include <vector>

#include "ddpm/core/tape.h"

namespace ddpm {

void softmax_forward(float* probs, const float* logits, int64_t N, int64_t K);
// Returns the mean loss; fills probs [N, K].
double cross_entropy_forward(float* probs, const float* logits, const int64_t* labels, int64_t N, int64_t K);
// dlogits += dout * (probs - onehot(labels)) / N
void cross_entropy_backward(float* dlogits, float dout, const float* probs, const int64_t* labels, int64_t N,
                            int64_t K);

Var cross_entropy(Tape& tape, const Var& logits, const std::vector<int64_t>& labels);

}  // namespace ddpm

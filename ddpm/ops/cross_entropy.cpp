#include "ddpm/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "ddpm/core/check.h"

namespace ddpm {

// One row: probs_k = softmax(z)_k, with the max m subtracted before exp; returns
// logsumexp(z) = log sum_j exp(z_j - m) + m.
static double softmax_row(float* probs, const float* z, int64_t K) {
  float m = z[0];
  for (int64_t k = 1; k < K; k++) m = std::max(m, z[k]);
  // softmax(z)_k = exp(z_k - m) / sum_j exp(z_j - m)
  double total = 0.0;
  for (int64_t k = 0; k < K; k++) total += std::exp(static_cast<double>(z[k]) - m);
  for (int64_t k = 0; k < K; k++) probs[k] = static_cast<float>(std::exp(static_cast<double>(z[k]) - m) / total);
  return std::log(total) + m;
}

void softmax_forward(float* probs, const float* logits, int64_t N, int64_t K) {
  for (int64_t n = 0; n < N; n++) softmax_row(probs + n * K, logits + n * K, K);
}

double cross_entropy_forward(float* probs, const float* logits, const int64_t* labels, int64_t N, int64_t K) {
  double loss = 0.0;
  for (int64_t n = 0; n < N; n++) {
    const float* z = logits + n * K;
    // -log softmax(z)_y = log sum_j exp(z_j - m) + m - z_y
    const double log_sum_exp = softmax_row(probs + n * K, z, K);
    loss += log_sum_exp - z[labels[n]];
  }
  return loss / static_cast<double>(N);
}

void cross_entropy_backward(float* dlogits, float dout, const float* probs, const int64_t* labels, int64_t N,
                            int64_t K) {
  const float g = dout / static_cast<float>(N);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      // out = (1/N) sum_n (logsumexp(z_n) - z_n[y_n])
      const float onehot = (k == labels[n]) ? 1.0f : 0.0f;
      dlogits[n * K + k] += g * (probs[n * K + k] - onehot);
    }
}

Var cross_entropy(Tape& tape, const Var& logits, const std::vector<int64_t>& labels) {
  const Shape& s = logits->value.shape();
  DDPM_CHECK(s.size() == 2 && s[0] > 0 && s[1] > 0 && static_cast<int64_t>(labels.size()) == s[0],
             "cross_entropy: logits " << to_string(s) << " must be [N, K] with N = " << labels.size()
                                      << " (the number of labels), N, K > 0");
  const int64_t N = s[0], K = s[1];
  for (int64_t n = 0; n < N; n++)
    DDPM_CHECK(labels[n] >= 0 && labels[n] < K,
               "cross_entropy: label " << labels[n] << " at row " << n << " is outside 0.." << K - 1);
  auto probs = std::make_shared<Tensor>(Shape{N, K});
  Tensor out({1});
  out[0] = static_cast<float>(cross_entropy_forward(probs->data(), logits->value.data(), labels.data(), N, K));
  auto labels_copy = std::make_shared<std::vector<int64_t>>(labels);
  return tape.record("cross_entropy", out, {logits}, [logits, probs, labels_copy, N, K](Node& o) {
    cross_entropy_backward(logits->grad_ref().data(), o.grad[0], probs->data(), labels_copy->data(), N, K);
  });
}

}  // namespace ddpm

// gaussian.h: the two distributions the variational bound is made of, in double.
//
//   normal_kl                      KL between diagonal Gaussians: the terms L_T and L_{t-1}
//                                  (slide "Reverse (7/15)"; Ho et al. 2020, Eq. 5)
//   discretized_gaussian_log_prob  the decoder L_0 = -log p_theta(x_0 | x_1) of 8-bit data
//                                  (slide "Reverse (15/15)"; Ho et al. 2020, Eq. 13)
//
// Each can also return its derivative with respect to the second Gaussian's log-variance
// (log-scale for the decoder): the learned variance trains Sigma_theta through them
// (ddpm/extensions/learned_variance.h), and the derivative sits beside the value it
// differentiates.
#pragma once

#include "ddpm/core/tensor.h"

namespace ddpm {

// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats. With
// dlogvar2 given, also d KL / d logvar2 into it.
double normal_kl(double mean1, double logvar1, double mean2, double logvar2, double* dlogvar2 = nullptr);
Tensor normal_kl(const Tensor& mean1, const Tensor& logvar1, const Tensor& mean2, const Tensor& logvar2);

// log Phi(z), Phi the standard normal CDF, to ~1e-15 relative for every z (the decoder's edge bins).
double log_normal_cdf(double z);

// log of the probability that N(mean, exp(log_scale)^2) puts on the 8-bit bin of x (x on the
// grid -1 + 2k/255, k = 0..255): the bin is [x - 1/255, x + 1/255], with the edge bins open to
// -inf (x = -1) and +inf (x = 1) (Ho et al. 2020, Sec. 3.3, Eq. 13). With dlog_scale given,
// also d log P / d log_scale into it.
double discretized_gaussian_log_prob(double x, double mean, double log_scale, double* dlog_scale = nullptr);
Tensor discretized_gaussian_log_likelihood(const Tensor& x, const Tensor& means, const Tensor& log_scales);

}  // namespace ddpm

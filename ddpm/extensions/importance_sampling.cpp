#include "ddpm/extensions/importance_sampling.h"

#include <algorithm>
#include <cmath>

#include "ddpm/core/check.h"

namespace ddpm {

TimestepSampler::TimestepSampler(int64_t T) : T_(T), history_(static_cast<size_t>(std::max<int64_t>(T, 0) * kHistory), 0.0f),
                                              count_(static_cast<size_t>(std::max<int64_t>(T, 0)), 0) {
  DDPM_CHECK(T >= 1, "TimestepSampler: T = " << T << " must be at least 1");
}

bool TimestepSampler::warmed_up() const {
  return std::all_of(count_.begin(), count_.end(), [](int64_t c) { return c == kHistory; });
}

std::vector<double> TimestepSampler::probabilities() const {
  std::vector<double> p(T_ + 1, 0.0);
  if (!warmed_up()) {
    for (int64_t t = 1; t <= T_; t++) p[t] = 1.0 / T_;  // uniform until every t has its history
    return p;
  }
  double total = 0.0;
  for (int64_t t = 1; t <= T_; t++) {
    double second_moment = 0.0;  // E[L_t^2] over the last kHistory values
    for (int64_t k = 0; k < kHistory; k++) {
      const double l = history_[(t - 1) * kHistory + k];
      second_moment += l * l / kHistory;
    }
    p[t] = std::sqrt(second_moment);  // p_t ∝ sqrt(E[L_t^2])   (Nichol & Dhariwal 2021, Sec. 3.3)
    total += p[t];
  }
  for (int64_t t = 1; t <= T_; t++) {
    const double normalized = total > 0 ? p[t] / total : 1.0 / T_;
    p[t] = (1.0 - kUniformProb) * normalized + kUniformProb / T_;  // improved-diffusion's uniform mix
  }
  return p;
}

void TimestepSampler::sample(RngKey key, int64_t first_index, int64_t N, std::vector<int64_t>& t,
                             std::vector<double>& weights) const {
  const std::vector<double> p = probabilities();
  std::vector<double> cdf(T_ + 1, 0.0);
  for (int64_t k = 1; k <= T_; k++) cdf[k] = cdf[k - 1] + p[k];
  t.resize(N);
  weights.resize(N);
  for (int64_t i = 0; i < N; i++) {
    // Inverse CDF: the first t with u * total < cdf[t].
    const double u = uniform_double(key, static_cast<uint64_t>(first_index + i)) * cdf[T_];
    int64_t ti = static_cast<int64_t>(std::upper_bound(cdf.begin() + 1, cdf.end(), u) - cdf.begin());
    ti = std::min<int64_t>(std::max<int64_t>(ti, 1), T_);
    t[i] = ti;
    weights[i] = 1.0 / (static_cast<double>(T_) * p[ti]);  // w = 1 / (T p_t): unbiased for the uniform mean
  }
}

void TimestepSampler::update(const std::vector<int64_t>& t, const std::vector<double>& losses) {
  DDPM_CHECK(t.size() == losses.size(), "TimestepSampler::update: " << t.size() << " timesteps, " << losses.size()
                                                                     << " losses");
  for (size_t i = 0; i < t.size(); i++) {
    DDPM_CHECK(t[i] >= 1 && t[i] <= T_, "TimestepSampler::update: t = " << t[i] << " outside 1.." << T_);
    float* row = history_.data() + (t[i] - 1) * kHistory;
    int64_t& c = count_[t[i] - 1];
    if (c == kHistory) {
      std::copy(row + 1, row + kHistory, row);  // drop the oldest
      row[kHistory - 1] = static_cast<float>(losses[i]);
    } else {
      row[c++] = static_cast<float>(losses[i]);
    }
  }
}

void TimestepSampler::state(Tensor& history, Tensor& count) const {
  history = Tensor::from({T_, kHistory}, history_);
  count = Tensor({T_});
  for (int64_t k = 0; k < T_; k++) count[k] = static_cast<float>(count_[k]);
}

void TimestepSampler::set_state(const Tensor& history, const Tensor& count) {
  DDPM_CHECK(history.shape() == Shape({T_, kHistory}) && count.shape() == Shape({T_}),
             "TimestepSampler: state history " << history.shape_str() << " and count " << count.shape_str()
                                               << " do not fit T = " << T_ << " (want [" << T_ << ", " << kHistory
                                               << "] and [" << T_ << "])");
  for (int64_t k = 0; k < T_; k++) {
    const float c = count[k];
    DDPM_CHECK(c >= 0 && c <= kHistory && c == std::floor(c),
               "TimestepSampler: count[" << k << "] = " << c << " is not an integer in 0.." << kHistory);
    count_[k] = static_cast<int64_t>(c);
  }
  history_ = history.to_vector();
}

}  // namespace ddpm

// Tests for ddpm/extensions/guidance.h: the guidance formula with a fake eps (the U-Net's
// guided output is tests/app/test_sampling.cpp's).
#include "ddpm/core/check.h"
#include "ddpm/extensions/guidance.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("guidance: eps = (1 + w) eps(x, c) - w eps(x, null), with a fake eps") {
  Tensor c = Tensor::from({1, 1, 1, 3}, {1.0f, -2.0f, 0.5f}), u = Tensor::from({1, 1, 1, 3}, {0.0f, 1.0f, 0.5f});
  CHECK(guided_eps(c, u, 0.0).to_vector() == c.to_vector());  // w = 0: the conditional model
  CHECK(guided_eps(c, u, -1.0).to_vector() == u.to_vector());  // w = -1: the unconditional one
  CHECK(guided_eps(c, u, 2.0).to_vector() == std::vector<float>{3.0f, -8.0f, 0.5f});  // exact in float
  CHECK_THROWS_AS(guided_eps(c, Tensor({3}), 1.0), Error);
  // Only the first `channels` channels are mixed; the others are cond's.
  Tensor c2 = Tensor::from({1, 2, 1, 2}, {1.0f, -2.0f, 5.0f, 6.0f}), u2 = Tensor::from({1, 2, 1, 2}, {0.0f, 1.0f, 7.0f, 8.0f});
  CHECK(guided_eps(c2, u2, 2.0, 1).to_vector() == std::vector<float>{3.0f, -8.0f, 5.0f, 6.0f});
  CHECK_THROWS_AS(guided_eps(c2, u2, 2.0, 3), Error);
}

// Random horizontal flips: the mirror itself, and which images of a batch flip, as a
// pure function of the key.
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/data/augment.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("augment: hflip_image mirrors each row of each channel; twice is the identity") {
  // [C=2, H=2, W=3]: the middle column of an odd width stays.
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  hflip_image(x.data(), 2, 2, 3);
  CHECK(x == std::vector<float>{3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10});
  hflip_image(x.data(), 2, 2, 3);
  CHECK(x == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  std::vector<float> even = {1, 2, 3, 4};
  hflip_image(even.data(), 1, 1, 4);
  CHECK(even == std::vector<float>{4, 3, 2, 1});
  std::vector<float> one = {5};
  hflip_image(one.data(), 1, 1, 1);
  CHECK(one[0] == 5);
}

TEST_CASE("augment: random_hflip flips image n exactly when hflip_chosen(key, n), about half of them") {
  const int64_t N = 1000, C = 3, H = 2, W = 4;
  Tensor images({N, C, H, W});
  for (int64_t i = 0; i < images.numel(); i++) images[i] = static_cast<float>(i % W);  // 0 1 2 3 in every row
  const RngKey key{7, 42};
  Tensor flipped = images.clone();
  random_hflip(flipped, key);
  int64_t count = 0;
  for (int64_t n = 0; n < N; n++) {
    const bool chosen = hflip_chosen(key, static_cast<uint64_t>(n));
    count += chosen;
    // The first value of each image: 3 when flipped, 0 when not.
    CHECK(flipped[n * C * H * W] == (chosen ? 3.0f : 0.0f));
    CHECK(flipped[n * C * H * W + C * H * W - 1] == (chosen ? 0.0f : 3.0f));
  }
  // Binomial(1000, 0.5): 500 +- 16 (one sd); 420..580 is 5 sd.
  CHECK(count > 420);
  CHECK(count < 580);
  // The same key gives the same flips; another key others.
  Tensor again = images.clone();
  random_hflip(again, key);
  CHECK(again.to_vector() == flipped.to_vector());
  Tensor other = images.clone();
  random_hflip(other, RngKey{7, 43});
  CHECK(other.to_vector() != flipped.to_vector());
  Tensor flat({4, 4});
  CHECK_THROWS_WITH_AS(random_hflip(flat, key), doctest::Contains("want images [N, C, H, W], got [4, 4]"), Error);
}

#include <cmath>

#include "ddpm/core/check.h"
#include "ddpm/core/rng.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("rng: values are a pure function of (seed, stream, index)") {
  RngKey k{42, make_stream(1, 7)};
  CHECK(normal(k, 5) == normal(k, 5));
  CHECK(normal(k, 5) != normal(k, 6));
  CHECK(normal(RngKey{43, k.stream}, 5) != normal(k, 5));
  // A slice filled from an offset equals the same elements of the whole.
  std::vector<float> whole(100), part(30);
  fill_normal(whole.data(), 100, k);
  fill_normal(part.data(), 30, k, 41);
  for (int i = 0; i < 30; i++) CHECK(part[i] == whole[41 + i]);
}

TEST_CASE("rng: uniform and normal moments within Monte Carlo error") {
  const int n = 200000;
  RngKey k{1, 2};
  double su = 0, sn = 0, sn2 = 0, sn4 = 0;
  for (int i = 0; i < n; i++) {
    double u = uniform(k, i);
    REQUIRE(u > 0.0);
    REQUIRE(u < 1.0);
    su += u;
    double z = normal(k, i);
    sn += z;
    sn2 += z * z;
    sn4 += z * z * z * z;
  }
  // Standard errors: uniform mean sqrt(1/12/n) ~ 6.5e-4; normal mean 1/sqrt(n) ~ 2.2e-3;
  // E z^2 = 1 with sd sqrt(2/n) ~ 3.2e-3; E z^4 = 3 with sd sqrt(96/n) ~ 0.022. 5 sigma.
  CHECK(std::fabs(su / n - 0.5) < 5 * 6.5e-4);
  CHECK(std::fabs(sn / n) < 5 * 2.3e-3);
  CHECK(std::fabs(sn2 / n - 1.0) < 5 * 3.2e-3);
  CHECK(std::fabs(sn4 / n - 3.0) < 5 * 0.022);
}

TEST_CASE("rng: Generator is resumable from its counter and below() is in range") {
  Generator g(9, 3);
  for (int i = 0; i < 10; i++) g.normal();
  uint64_t c = g.counter();
  float a = g.normal();
  Generator h(9, 3);
  h.set_counter(c);
  CHECK(h.normal() == a);
  int counts[7] = {0};
  for (int i = 0; i < 7000; i++) counts[g.below(7)]++;
  for (int c7 : counts) CHECK(c7 > 800);  // expected 1000, sd ~ 29
  CHECK_THROWS_AS(g.below(0), Error);
}

#include <cmath>
#include <cstdint>

#include "ddpm/core/check.h"
#include "ddpm/core/tensor.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("tensor: shape, numel, zero fill and 64-byte alignment") {
  Tensor t({2, 3, 5, 7});
  CHECK(t.defined());
  CHECK(t.dim() == 4);
  CHECK(t.numel() == 210);
  CHECK(t.size(-1) == 7);
  CHECK(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  for (int64_t i = 0; i < t.numel(); i++) CHECK(t[i] == 0.0f);
  CHECK(t.shape_str() == "[2, 3, 5, 7]");
  CHECK_FALSE(Tensor().defined());
}

TEST_CASE("tensor: copies share storage, clone does not, reshape keeps numel") {
  Tensor a = Tensor::full({4}, 1.0f);
  Tensor b = a;
  b[0] = 5.0f;
  CHECK(a[0] == 5.0f);
  Tensor c = a.clone();
  c[1] = 9.0f;
  CHECK(a[1] == 1.0f);
  Tensor r = a.reshape({2, 2});
  CHECK(r.shape() == Shape{2, 2});
  CHECK(r.data() == a.data());
  CHECK_THROWS_AS(a.reshape({3}), Error);
}

TEST_CASE("tensor: bad shapes throw ddpm::Error naming the shape") {
  CHECK_THROWS_AS(Tensor({1, 2, 3, 4, 5}), Error);
  CHECK_THROWS_AS(Tensor({-1}), Error);
  CHECK_THROWS_AS(Tensor::from({2}, {1.0f, 2.0f, 3.0f}), Error);
  try {
    Tensor({2, -3});
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("[2, -3]") != std::string::npos);
    CHECK(std::string(e.what()).find("tensor.cpp:") != std::string::npos);
  }
}

TEST_CASE("tensor: first_non_finite finds the first NaN or Inf, -1 when all are finite") {
  Tensor x({2, 3});
  CHECK(first_non_finite(x) == -1);
  CHECK(first_non_finite(Tensor({0})) == -1);
  x[4] = -INFINITY;
  CHECK(first_non_finite(x) == 4);
  x[1] = NAN;
  CHECK(first_non_finite(x) == 1);
  x[1] = 3.4e38f;  // large but finite
  CHECK(first_non_finite(x) == 4);
}

#include <atomic>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/parallel.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("parallel: parallel_for covers every index exactly once, at 1, 2 and 3 threads") {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    CHECK(num_threads() == threads);
    for (int64_t n : {0, 1, 5, 1000, 12345}) {
      std::vector<std::atomic<int>> hits(n);
      for (auto& h : hits) h = 0;
      parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) hits[i]++;
      });
      for (int64_t i = 0; i < n; i++) REQUIRE(hits[i] == 1);
    }
  }
  set_num_threads(1);
}

TEST_CASE("parallel: nested parallel_for runs inline and exceptions propagate") {
  set_num_threads(2);
  std::atomic<int64_t> total{0};
  parallel_for(10, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++)
      parallel_for(10, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
  });
  CHECK(total == 100);
  CHECK_THROWS_AS(parallel_for(100, [&](int64_t, int64_t) { throw Error("boom"); }), Error);
  // The pool still works after an exception.
  std::atomic<int64_t> after{0};
  parallel_for(100, [&](int64_t b, int64_t e) { after += e - b; });
  CHECK(after == 100);
  set_num_threads(1);
  CHECK_THROWS_AS(set_num_threads(0), Error);
}

TEST_CASE("parallel: parallel_blocks gives fixed blocks whatever the thread count") {
  std::vector<int64_t> ref;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<int64_t> begins(num_blocks(1000, 64));
    parallel_blocks(1000, 64, [&](int64_t b, int64_t s, int64_t e) { begins[b] = s * 10000 + e; });
    if (ref.empty()) ref = begins;
    CHECK(begins == ref);
  }
  set_num_threads(1);
}

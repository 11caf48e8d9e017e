#include <algorithm>
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
  // Each block must be visited exactly once with its own range: the vectors start at values
  // no call writes (-1, 0 calls), so a callback that never runs fails.
  const int64_t n = 1000, block_size = 64, blocks = num_blocks(n, block_size);
  REQUIRE(blocks == 16);  // 15 full blocks and a tail of 40
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    CAPTURE(threads);
    std::vector<int64_t> begins(blocks, -1), ends(blocks, -1);
    std::vector<std::atomic<int>> calls(blocks);
    for (auto& c : calls) c = 0;
    parallel_blocks(n, block_size, [&](int64_t b, int64_t s, int64_t e) {
      begins[b] = s;
      ends[b] = e;
      calls[b]++;
    });
    for (int64_t b = 0; b < blocks; b++) {
      CAPTURE(b);
      CHECK(calls[b].load() == 1);
      CHECK(begins[b] == b * block_size);
      CHECK(ends[b] == std::min(n, (b + 1) * block_size));
    }
  }
  set_num_threads(1);
}

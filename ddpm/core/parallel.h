// parallel.h: a small std::thread pool and parallel_for. No OpenMP.
//
// parallel_for(n, fn) calls fn(begin, end) on disjoint ranges that cover [0, n), on the
// pool's threads and the caller's. The contract that keeps results bit-identical for
// any thread count: fn computes each index in [begin, end) on its own, in an order
// that does not depend on the range it was given. Reductions across indices are done
// by the caller afterwards, in a fixed order (see parallel_reduce_blocks below).
//
// A parallel_for called from inside a worker runs inline, so nesting never deadlocks.
#pragma once

#include <cstdint>
#include <functional>

namespace ddpm {

constexpr int kMaxThreads = 256;  // the pool's bound on set_num_threads
void set_num_threads(int n);  // 1 <= n <= kMaxThreads; 1 runs everything on the caller's thread
int num_threads();

void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn, int64_t grain = 1);

// For reductions: split [0, n) into a fixed number of blocks that depends only on n
// and block_size (never on the thread count); fn(block, begin, end) fills its own
// partial result, and the caller sums the partials in block order.
inline int64_t num_blocks(int64_t n, int64_t block_size) { return (n + block_size - 1) / block_size; }
void parallel_blocks(int64_t n, int64_t block_size, const std::function<void(int64_t block, int64_t begin, int64_t end)>& fn);

}  // namespace ddpm

#include "ddpm/core/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "ddpm/core/check.h"

namespace ddpm {
namespace {

thread_local bool in_worker = false;

// Waking a sleeping thread costs tens of microseconds (more in a VM), as long as many of
// the U-Net's ops take. So a worker that finishes a job, and a caller waiting for the
// workers, first poll (yielding the core to anyone who wants it) for up to kSpin before
// they sleep on the condition variable.
constexpr std::chrono::microseconds kSpin{200};
template <class Ready>
void spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  while (!ready() && std::chrono::steady_clock::now() <= deadline) std::this_thread::yield();
}

// One job at a time: the caller publishes (fn, n, chunk), wakes the workers, takes
// chunks from a shared counter itself, and waits until every chunk is done. Every
// decision is taken under mutex_; the atomics only let the spinning side look without it.
class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_++;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stop_ = false;
    for (int i = 1; i < n; i++) workers_.emplace_back([this] { work(); });
  }

  void run(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    int64_t chunks = (n + chunk - 1) / chunk;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      pending_ = chunks;
      error_ = nullptr;
      generation_++;
    }
    wake_.notify_all();
    in_worker = true;  // a parallel_for inside fn runs inline on this thread too
    drain();
    in_worker = false;
    spin_until([&] { return pending_.load() == 0 && active_.load() == 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    // Wait for the chunks and for every worker to leave drain(), so none can touch
    // the next job's counter with a stale chunk index.
    done_.wait(lock, [&] { return pending_ == 0 && active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void drain() {
    for (;;) {
      int64_t c = next_.fetch_add(1);
      int64_t begin = c * chunk_;
      if (begin >= n_) return;
      int64_t end = std::min(n_, begin + chunk_);
      try {
        (*fn_)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_all();
    }
  }

  void work() {
    in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return stop_.load() || generation_.load() != seen; });
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || (generation_ != seen && fn_ != nullptr); });
        if (stop_) return;
        seen = generation_;
        active_++;
      }
      drain();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;  // one parallel_for at a time from outside threads
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> pending_{0}, active_{0};  // chunks not yet done; workers inside drain()
  std::atomic<int64_t> next_{0};
  std::atomic<uint64_t> generation_{0};  // bumped for each job (and for a resize)
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_num_threads(int n) {
  DDPM_CHECK(n >= 1 && n <= kMaxThreads, "set_num_threads: n = " << n << " must be in [1, " << kMaxThreads << "]");
  if (n != pool().size()) pool().resize(n);
}

int num_threads() { return pool().size(); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  int threads = num_threads();
  grain = std::max<int64_t>(grain, 1);
  if (threads == 1 || in_worker || n <= grain) {
    fn(0, n);
    return;
  }
  // About four chunks per thread balances load; the chunking never affects results.
  int64_t chunk = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
  pool().run(n, chunk, fn);
}

void parallel_blocks(int64_t n, int64_t block_size, const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  int64_t blocks = num_blocks(n, block_size);
  parallel_for(blocks, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) fn(b, b * block_size, std::min(n, (b + 1) * block_size));
  });
}

}  // namespace ddpm

// tests/dist/thread_ranks.h: R "ranks" as R threads of the test process, behind the
// Communicator interface, so that the suite checks what MPI ranks do (the trainer's split,
// the tree's exchange, the sampling and NLL gathers) without MPI. Every collective posts its
// buffers, meets the others at a barrier, copies what it needs from theirs and meets them
// again before any buffer may change. Run the ranks with set_num_threads(1): the pool is
// the process's, and with one thread parallel_for runs on the caller.
#pragma once

#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ddpm/dist/communicator.h"

namespace ddpm {
namespace testing {

class ThreadRanks {
 public:
  explicit ThreadRanks(int R) : R_(R), send_(R), counts_(R) {}

  // fn(comm) on R threads at once; rethrows the first exception a rank threw.
  void run(const std::function<void(Communicator& comm)>& fn) {
    std::vector<std::thread> threads;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(R_));
    for (int r = 0; r < R_; r++)
      threads.emplace_back([&, r] {
        Rank comm(*this, r);
        try {
          fn(comm);
        } catch (...) {
          errors[r] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

 private:
  class Rank : public Communicator {
   public:
    Rank(ThreadRanks& g, int r) : g_(g), r_(r) {}
    int rank() const override { return r_; }
    int size() const override { return g_.R_; }
    std::string describe() const override { return std::to_string(g_.R_) + " test threads"; }
    void barrier() override { g_.barrier(); }
    void broadcast(void* data, int64_t bytes, int root) override {
      g_.post(r_, data, {});
      if (r_ != root && bytes > 0) std::memcpy(data, g_.send_[root], static_cast<size_t>(bytes));
      g_.barrier();
    }
    void allgather(const void* send, int64_t bytes, void* recv) override {
      g_.post(r_, send, {});
      for (int j = 0; j < g_.R_; j++)
        if (bytes > 0) std::memcpy(static_cast<char*>(recv) + j * bytes, g_.send_[j], static_cast<size_t>(bytes));
      g_.barrier();
    }
    void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts) override {
      g_.post(r_, send, {});
      int64_t at = 0;
      for (int j = 0; j < g_.R_; j++) {
        if (counts[j] > 0) std::memcpy(static_cast<char*>(recv) + at, g_.send_[j], static_cast<size_t>(counts[j]));
        at += counts[j];
      }
      g_.barrier();
    }
    void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                   const std::vector<int64_t>& recv_counts) override {
      g_.post(r_, send, send_counts);
      int64_t at = 0;
      for (int i = 0; i < g_.R_; i++) {
        int64_t from = 0;  // where rank i's bytes for this rank start in its send buffer
        for (int j = 0; j < r_; j++) from += g_.counts_[i][j];
        if (g_.counts_[i][r_] != recv_counts[i]) throw std::runtime_error("alltoallv: counts disagree");
        if (recv_counts[i] > 0)
          std::memcpy(static_cast<char*>(recv) + at, static_cast<const char*>(g_.send_[i]) + from,
                      static_cast<size_t>(recv_counts[i]));
        at += recv_counts[i];
      }
      g_.barrier();
    }
    [[noreturn]] void abort(int) override { std::terminate(); }

   private:
    ThreadRanks& g_;
    int r_;
  };

  // Posts this rank's buffer and counts, then waits until every rank has.
  void post(int r, const void* send, const std::vector<int64_t>& counts) {
    send_[r] = send;
    counts_[r] = counts;
    barrier();
  }
  void barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t generation = generation_;
    if (++arrived_ == R_) {
      arrived_ = 0;
      generation_++;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

  int R_;
  std::vector<const void*> send_;
  std::vector<std::vector<int64_t>> counts_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace testing
}  // namespace ddpm

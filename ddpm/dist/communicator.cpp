#include "ddpm/dist/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ddpm/core/check.h"

namespace ddpm {

namespace {

int64_t sum_of(const std::vector<int64_t>& counts) {
  int64_t s = 0;
  for (int64_t c : counts) s += c;
  return s;
}

}  // namespace

void SingleProcess::broadcast(void*, int64_t bytes, int root) {
  DDPM_CHECK(root == 0 && bytes >= 0, "broadcast: root " << root << " of a single process, " << bytes << " bytes");
}

void SingleProcess::allgather(const void* send, int64_t bytes, void* recv) {
  DDPM_CHECK(bytes >= 0, "allgather: " << bytes << " bytes");
  if (bytes > 0) std::memmove(recv, send, static_cast<size_t>(bytes));
}

void SingleProcess::allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts) {
  DDPM_CHECK(counts.size() == 1 && counts[0] >= 0, "allgatherv: " << counts.size() << " counts for one process");
  if (counts[0] > 0) std::memmove(recv, send, static_cast<size_t>(counts[0]));
}

void SingleProcess::alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                              const std::vector<int64_t>& recv_counts) {
  DDPM_CHECK(send_counts.size() == 1 && recv_counts.size() == 1 && send_counts[0] == recv_counts[0] &&
                 send_counts[0] >= 0,
             "alltoallv: one process sends " << sum_of(send_counts) << " bytes and receives " << sum_of(recv_counts));
  if (send_counts[0] > 0) std::memmove(recv, send, static_cast<size_t>(send_counts[0]));
}

void SingleProcess::abort(int code) {
  std::fflush(nullptr);
  std::_Exit(code);
}

#ifndef DDPM_MPI  // the MPI build's world_communicator is in ddpm/dist/mpi.cpp
std::unique_ptr<Communicator> world_communicator(int*, char***) { return std::make_unique<SingleProcess>(); }
#endif

std::vector<uint64_t> allgather_u64(Communicator& comm, uint64_t value) {
  std::vector<uint64_t> all(static_cast<size_t>(comm.size()));
  comm.allgather(&value, sizeof value, all.data());
  return all;
}

namespace {

template <class T>
std::vector<T> allgatherv_typed(Communicator& comm, const std::vector<T>& mine, const std::vector<int64_t>& counts) {
  DDPM_CHECK(static_cast<int>(counts.size()) == comm.size() &&
                 counts[static_cast<size_t>(comm.rank())] == static_cast<int64_t>(mine.size()),
             "allgatherv: rank " << comm.rank() << " gives " << mine.size() << " elements, counts name "
                                 << (counts.size() > static_cast<size_t>(comm.rank()) ? counts[comm.rank()] : -1));
  std::vector<int64_t> bytes(counts.size());
  for (size_t r = 0; r < counts.size(); r++) bytes[r] = counts[r] * static_cast<int64_t>(sizeof(T));
  std::vector<T> all(static_cast<size_t>(sum_of(counts)));
  comm.allgatherv(mine.data(), all.data(), bytes);
  return all;
}

}  // namespace

std::vector<float> allgatherv_floats(Communicator& comm, const std::vector<float>& mine,
                                     const std::vector<int64_t>& counts) {
  return allgatherv_typed(comm, mine, counts);
}

std::vector<double> allgatherv_doubles(Communicator& comm, const std::vector<double>& mine,
                                       const std::vector<int64_t>& counts) {
  return allgatherv_typed(comm, mine, counts);
}

void broadcast_string(Communicator& comm, std::string& s, int root) {
  uint64_t size = s.size();
  comm.broadcast(&size, sizeof size, root);
  s.resize(size);
  comm.broadcast(&s[0], static_cast<int64_t>(size), root);
}

void check_same_on_every_rank(Communicator& comm, uint64_t value, const std::string& what) {
  const std::vector<uint64_t> all = allgather_u64(comm, value);
  for (size_t r = 1; r < all.size(); r++) {
    char a[32], b[32];
    std::snprintf(a, sizeof a, "%016llx", static_cast<unsigned long long>(all[0]));
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(all[r]));
    DDPM_CHECK(all[r] == all[0], what << " differs between ranks: rank 0 has hash " << a << ", rank " << r << " has "
                                      << b << "; every rank must read the same files and run the same build");
  }
}

Share share_of(int64_t n, int R, int r) {
  DDPM_CHECK(n >= 0 && R >= 1 && r >= 0 && r < R, "share_of: " << n << " items, rank " << r << " of " << R);
  Share s;
  s.first = n * r / R;
  s.count = n * (r + 1) / R - s.first;
  return s;
}

}  // namespace ddpm

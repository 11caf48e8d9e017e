// dist/communicator.h: the processes of one job and the few collectives the library needs,
// as improved-diffusion's dist_util.py brings MPI in: one small interface, two
// implementations.
//
//   SingleProcess          rank 0 of 1; every collective is a copy. Always built.
//   the MPI communicator   ddpm/dist/mpi.cpp, the only file that includes <mpi.h>, compiled
//                          only by `make MPI=1` / CMake -DDDPM_MPI=ON (Open MPI's mpicxx).
//
// world_communicator() gives the process its communicator: MPI_COMM_WORLD in an MPI build
// (MPI_Init there, MPI_Finalize when it is destroyed), SingleProcess otherwise.
//
// Every collective must be called by every rank, in the same order, with matching sizes;
// an error (a rank died, a size mismatch) throws ddpm::Error naming the call. Sizes are in
// bytes; they are checked against what MPI's int counts can carry.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ddpm {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "single process" or "Open MPI v4.1.4, 4 ranks": for the tools' first line.
  virtual std::string describe() const = 0;

  virtual void barrier() = 0;
  // The root's `bytes` bytes at `data` are copied into every rank's `data`.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // Rank r gives `bytes` bytes; every rank's recv (size() * bytes) holds them at r * bytes.
  virtual void allgather(const void* send, int64_t bytes, void* recv) = 0;
  // Rank r gives counts[r] bytes; every rank's recv holds them all in rank order, back to back.
  virtual void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts) = 0;
  // This rank sends send_counts[j] bytes to rank j (send holds them in j order, back to back)
  // and receives recv_counts[i] bytes from rank i (recv, in i order).
  virtual void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                         const std::vector<int64_t>& recv_counts) = 0;
  // Ends every process of the job with this exit code (MPI_Abort), now.
  [[noreturn]] virtual void abort(int code) = 0;
};

// One process: rank 0 of 1.
class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single process"; }
  void barrier() override {}
  void broadcast(void* data, int64_t bytes, int root) override;
  void allgather(const void* send, int64_t bytes, void* recv) override;
  void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts) override;
  void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts) override;
  [[noreturn]] void abort(int code) override;
};

// The process's communicator (see the top of this file). Call it once, first thing in main.
std::unique_ptr<Communicator> world_communicator(int* argc, char*** argv);

// Typed helpers over the byte collectives.
// Every rank's `value`, in rank order.
std::vector<uint64_t> allgather_u64(Communicator& comm, uint64_t value);
// Every rank's `mine` (counts[r] elements on rank r), concatenated in rank order.
std::vector<float> allgatherv_floats(Communicator& comm, const std::vector<float>& mine,
                                     const std::vector<int64_t>& counts);
std::vector<double> allgatherv_doubles(Communicator& comm, const std::vector<double>& mine,
                                       const std::vector<int64_t>& counts);
// The root's string into every rank's `s`.
void broadcast_string(Communicator& comm, std::string& s, int root);
// Throws the same ddpm::Error on every rank when `value` (a hash of what every rank must
// hold alike: the dataset, the training state) differs between ranks, naming `what` and
// the first rank that differs from rank 0.
void check_same_on_every_rank(Communicator& comm, uint64_t value, const std::string& what);

// The share of rank r when n items are split over R ranks in contiguous blocks:
// [n r / R, n (r + 1) / R).
struct Share {
  int64_t first = 0, count = 0;
};
Share share_of(int64_t n, int R, int r);

}  // namespace ddpm

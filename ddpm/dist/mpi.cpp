// dist/mpi.cpp: the Communicator over MPI_COMM_WORLD. The only file that includes <mpi.h>;
// compiled only by `make MPI=1` and CMake -DDDPM_MPI=ON (see communicator.h).
//
// MPI is initialized with MPI_THREAD_FUNNELED: only the main thread calls MPI (the thread
// pool's workers never do). Errors return instead of aborting inside MPI
// (MPI_ERRORS_RETURN), so that a failed collective becomes a ddpm::Error naming the call
// and the rank; the tool then prints it and ends the job with MPI_Abort.
// The C API only: Open MPI's deprecated C++ bindings warn under -Wextra.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/dist/communicator.h"

namespace ddpm {

namespace {

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(int* argc, char*** argv) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    v = v.substr(0, v.find_first_of(",\n"));  // "Open MPI v4.1.4"
    return v + ", " + std::to_string(size_) + (size_ == 1 ? " rank" : " ranks");
  }

  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

  void broadcast(void* data, int64_t bytes, int root) override {
    check(MPI_Bcast(data, as_int(bytes, "MPI_Bcast"), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }

  void allgather(const void* send, int64_t bytes, void* recv) override {
    const int n = as_int(bytes, "MPI_Allgather");
    as_int(bytes * size_, "MPI_Allgather");
    check(MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
  }

  void allgatherv(const void* send, void* recv, const std::vector<int64_t>& counts) override {
    std::vector<int> c, d;
    layout(counts, "MPI_Allgatherv", c, d);
    check(MPI_Allgatherv(send, c[static_cast<size_t>(rank_)], MPI_BYTE, recv, c.data(), d.data(), MPI_BYTE,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }

  void alltoallv(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                 const std::vector<int64_t>& recv_counts) override {
    std::vector<int> sc, sd, rc, rd;
    layout(send_counts, "MPI_Alltoallv", sc, sd);
    layout(recv_counts, "MPI_Alltoallv", rc, rd);
    check(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(), rd.data(), MPI_BYTE, MPI_COMM_WORLD),
          "MPI_Alltoallv");
  }

  void abort(int code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] true if it did
  }

 private:
  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    DDPM_FAIL("rank " << rank_ << " of " << size_ << ": " << call << " failed: " << std::string(text, len)
                      << " (another rank has probably stopped)");
  }
  // MPI counts and displacements are ints.
  static int as_int(int64_t bytes, const char* call) {
    DDPM_CHECK(bytes >= 0 && bytes <= INT_MAX, call << ": " << bytes << " bytes is beyond MPI's int counts ("
                                                    << INT_MAX << "); use more ranks or a smaller model");
    return static_cast<int>(bytes);
  }
  void layout(const std::vector<int64_t>& counts, const char* call, std::vector<int>& c, std::vector<int>& d) const {
    DDPM_CHECK(static_cast<int>(counts.size()) == size_, call << ": " << counts.size() << " counts for " << size_ << " ranks");
    int64_t offset = 0;
    for (int64_t n : counts) {
      c.push_back(as_int(n, call));
      d.push_back(as_int(offset, call));
      offset += n;
    }
    as_int(offset, call);
  }

  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> world_communicator(int* argc, char*** argv) {
  return std::make_unique<MpiCommunicator>(argc, argv);
}

}  // namespace ddpm

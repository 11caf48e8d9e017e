// The communicator: the single-process implementation every build has, the typed helpers,
// the split of n items over R ranks, and the same collectives over R test threads
// (tests/dist/thread_ranks.h), which the trainer and sampling tests use as ranks.
#include <numeric>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/dist/communicator.h"
#include "tests/dist/thread_ranks.h"
#include "tests/testing.h"

using namespace ddpm;

TEST_CASE("dist: a single process is rank 0 of 1 and every collective is a copy") {
  SingleProcess one;
  CHECK(one.rank() == 0);
  CHECK(one.size() == 1);
  CHECK(one.describe() == "single process");
  one.barrier();
  int64_t v = 42;
  one.broadcast(&v, sizeof v, 0);
  CHECK(v == 42);
  CHECK_THROWS_AS(one.broadcast(&v, sizeof v, 1), Error);
  CHECK(allgather_u64(one, 7) == std::vector<uint64_t>{7});
  const std::vector<float> mine{1.5f, -2.0f, 3.25f};
  CHECK(allgatherv_floats(one, mine, {3}) == mine);
  CHECK(allgatherv_doubles(one, {0.5, 0.25}, {2}) == std::vector<double>{0.5, 0.25});
  CHECK_THROWS_AS(allgatherv_floats(one, mine, {2}), Error);  // counts must name what this rank gives
  std::vector<float> out(3);
  one.alltoallv(mine.data(), {12}, out.data(), {12});
  CHECK(out == mine);
  CHECK_THROWS_AS(one.alltoallv(mine.data(), {12}, out.data(), {8}), Error);
  std::string s = "kept";
  broadcast_string(one, s, 0);
  CHECK(s == "kept");
  check_same_on_every_rank(one, 123, "anything");
}

TEST_CASE("dist: share_of splits n items into R contiguous blocks that cover them once") {
  for (int R = 1; R <= 5; R++)
    for (int64_t n = 0; n <= 11; n++) {
      int64_t next = 0;
      for (int r = 0; r < R; r++) {
        const Share s = share_of(n, R, r);
        REQUIRE(s.first == next);
        REQUIRE(s.count >= n / R);
        REQUIRE(s.count <= n / R + 1);
        next += s.count;
      }
      REQUIRE(next == n);
    }
  CHECK(share_of(12, 4, 2).first == 6);
  CHECK(share_of(12, 4, 2).count == 3);
  CHECK_THROWS_AS(share_of(5, 2, 2), Error);
}

TEST_CASE("dist: the collectives over 3 test ranks move what MPI's would") {
  testing::ThreadRanks ranks(3);
  ranks.run([](Communicator& comm) {
    const int r = comm.rank();
    REQUIRE(comm.size() == 3);
    // broadcast from rank 1
    int64_t v = r == 1 ? 99 : -1;
    comm.broadcast(&v, sizeof v, 1);
    REQUIRE(v == 99);
    // allgather, allgatherv: rank r gives r + 1 values r
    REQUIRE(allgather_u64(comm, 10 + r) == std::vector<uint64_t>{10, 11, 12});
    const std::vector<double> all = allgatherv_doubles(comm, std::vector<double>(r + 1, r), {1, 2, 3});
    REQUIRE(all == std::vector<double>{0, 1, 1, 2, 2, 2});
    // alltoallv: rank r sends j + 1 floats of value 10 r + j to rank j
    std::vector<float> send;
    std::vector<int64_t> send_bytes, recv_bytes;
    for (int j = 0; j < 3; j++) {
      for (int k = 0; k <= j; k++) send.push_back(static_cast<float>(10 * r + j));
      send_bytes.push_back((j + 1) * 4);
      recv_bytes.push_back((r + 1) * 4);
    }
    std::vector<float> recv(static_cast<size_t>(3 * (r + 1)));
    comm.alltoallv(send.data(), send_bytes, recv.data(), recv_bytes);
    for (int i = 0; i < 3; i++)
      for (int k = 0; k <= r; k++) REQUIRE(recv[static_cast<size_t>(i * (r + 1) + k)] == static_cast<float>(10 * i + r));
    std::string s = r == 2 ? "from rank 2" : "";
    broadcast_string(comm, s, 2);
    REQUIRE(s == "from rank 2");
    check_same_on_every_rank(comm, 5, "a value every rank holds alike");
    // A value that differs is refused on every rank alike, naming the first rank that differs.
    CHECK_THROWS_WITH_AS(check_same_on_every_rank(comm, r == 0 ? 1 : 2, "the dataset"),
                         doctest::Contains("the dataset differs between ranks: rank 0 has hash 0000000000000001, rank 1"),
                         Error);
  });
}

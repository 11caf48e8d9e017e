// The canonical tree of the micro-batch gradient sum (ddpm/dist/tree_reduce.h): its nodes,
// its order, and that any number of ranks dividing K gets the bits of one process.
#include <cmath>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/core/rng.h"
#include "ddpm/dist/tree_reduce.h"
#include "tests/dist/thread_ranks.h"
#include "tests/testing.h"

using namespace ddpm;

namespace {

// K leaves of n floats of very different magnitudes, so that the order of the additions
// shows in the bits.
std::vector<std::vector<float>> make_leaves(int64_t K, int64_t n) {
  std::vector<std::vector<float>> leaves(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; k++)
    for (int64_t i = 0; i < n; i++)
      leaves[k].push_back(normal(RngKey{3, static_cast<uint64_t>(k)}, static_cast<uint64_t>(i)) *
                          std::pow(10.0f, static_cast<float>((k * 7 + i) % 9) - 4.0f));
  return leaves;
}

LeafFn leaf_of(const std::vector<std::vector<float>>& leaves) {
  return [&leaves](int64_t i) { return leaves[static_cast<size_t>(i)]; };
}

}  // namespace

TEST_CASE("tree_reduce: the owned nodes of K = 12 over 3 ranks are the header's example") {
  using N = TreeNode;
  CHECK(owned_nodes(12, 3, 0) == std::vector<N>{{0, 3}, {3, 4}});
  CHECK(owned_nodes(12, 3, 1) == std::vector<N>{{4, 6}, {6, 7}, {7, 8}});
  CHECK(owned_nodes(12, 3, 2) == std::vector<N>{{8, 9}, {9, 12}});
  CHECK(owned_nodes(12, 4, 1) == std::vector<N>{{3, 6}});  // K / R = 3: one node per rank
  CHECK(owned_nodes(8, 2, 1) == std::vector<N>{{4, 8}});
  CHECK(owned_nodes(5, 1, 0) == std::vector<N>{{0, 5}});   // one rank: the root
  CHECK_THROWS_WITH_AS(owned_nodes(12, 5, 0), doctest::Contains("12 leaves cannot be split evenly over 5 ranks"), Error);
}

TEST_CASE("tree_reduce: every rank's nodes tile its own leaves, for every K and R dividing it") {
  for (int64_t K = 1; K <= 24; K++)
    for (int R = 1; R <= 8; R++) {
      if (K % R != 0) continue;
      for (int r = 0; r < R; r++) {
        int64_t next = K * r / R;
        for (const TreeNode& node : owned_nodes(K, R, r)) {
          REQUIRE(node.lo == next);
          next = node.hi;
        }
        REQUIRE(next == K * (r + 1) / R);
      }
    }
}

TEST_CASE("tree_reduce: tree_sum adds in the tree's order and agrees with a plain loop") {
  const auto leaves = make_leaves(5, 33);
  std::vector<int64_t> order;
  const std::vector<float> sum = tree_sum({0, 5}, [&](int64_t i) {
    order.push_back(i);
    return leaves[static_cast<size_t>(i)];
  });
  CHECK(order == std::vector<int64_t>{0, 1, 2, 3, 4});  // leaves left to right
  for (size_t i = 0; i < sum.size(); i++) {
    // [0,5) = [0,2) + [2,5) = (l0 + l1) + (l2 + (l3 + l4)), in float
    const float want = (leaves[0][i] + leaves[1][i]) + (leaves[2][i] + (leaves[3][i] + leaves[4][i]));
    REQUIRE(sum[i] == want);
  }
  // The plain loop in double: the tree's float sum is within float rounding of it.
  for (int64_t K : {1, 2, 3, 7, 12, 16}) {
    const auto ls = make_leaves(K, 50);
    const std::vector<float> t = tree_sum({0, K}, leaf_of(ls));
    for (size_t i = 0; i < t.size(); i++) {
      double plain = 0, magnitude = 0;
      for (const auto& l : ls) plain += l[i], magnitude += std::fabs(l[i]);
      // K - 1 float additions, each off by at most half an ulp of the running magnitude.
      REQUIRE(std::fabs(t[i] - plain) <= static_cast<double>(K) * 6e-8 * magnitude);
    }
  }
  CHECK(tree_sum({0, 1}, leaf_of(leaves)) == leaves[0]);  // one leaf is itself
}

TEST_CASE("tree_reduce: the top of the tree over any R's owned nodes gives the one-process bits") {
  const int64_t K = 12, n = 41;
  const auto leaves = make_leaves(K, n);
  const std::vector<float> one = tree_sum({0, K}, leaf_of(leaves));
  for (int R : {1, 2, 3, 4, 6, 12}) {
    std::vector<std::vector<std::vector<float>>> sums(static_cast<size_t>(R));
    std::vector<std::vector<const float*>> nodes(static_cast<size_t>(R));
    for (int r = 0; r < R; r++) {
      for (const TreeNode& node : owned_nodes(K, R, r)) sums[r].push_back(tree_sum(node, leaf_of(leaves)));
      for (const auto& s : sums[r]) nodes[r].push_back(s.data());
    }
    CAPTURE(R);
    CHECK(combine_owned(K, R, nodes, n) == one);
  }
}

TEST_CASE("tree_reduce: tree_allreduce over 1 to 4 ranks gives every rank the one-process bits") {
  const int64_t K = 12, n = 1001;  // n not divisible by R: uneven element shards
  const auto leaves = make_leaves(K, n);
  const std::vector<float> one = tree_sum({0, K}, leaf_of(leaves));
  SingleProcess single;
  CHECK(tree_allreduce(single, K, {one}, n) == one);
  for (int R : {2, 3, 4}) {
    testing::ThreadRanks ranks(R);
    std::vector<std::vector<float>> got(static_cast<size_t>(R));
    ranks.run([&](Communicator& comm) {
      std::vector<std::vector<float>> mine;
      for (const TreeNode& node : owned_nodes(K, comm.size(), comm.rank())) mine.push_back(tree_sum(node, leaf_of(leaves)));
      got[comm.rank()] = tree_allreduce(comm, K, std::move(mine), n);
    });
    for (int r = 0; r < R; r++) {
      CAPTURE(R);
      CAPTURE(r);
      CHECK(got[r] == one);
    }
  }
}

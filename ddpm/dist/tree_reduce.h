// dist/tree_reduce.h: the sum of K vectors (the micro-batches' gradients) in one order that
// depends on K alone, computed by any number of ranks R dividing K, to the same bits.
//
// The canonical tree over the leaves 0..K-1: node [lo, hi) is leaf lo when hi - lo = 1, else
// the elementwise float sum left + right of its halves [lo, mid) and [mid, hi),
// mid = lo + (hi - lo) / 2. For K = 12:
//
//                      [0,12)
//              [0,6)             [6,12)
//         [0,3)     [3,6)     [6,9)     [9,12)
//       0   [1,3) 3   [4,6) 6   [7,9) 9   [10,12)
//
// Rank r owns the leaves [K r / R, K (r + 1) / R). Walking down from the root, the first node
// wholly inside one rank's leaves is that rank's (owned_nodes): it sums the node alone
// (tree_sum, leaves left to right). With R = 3 above, rank 0 owns [0,3) and 3, rank 1 owns
// [4,6), 6 and 7, rank 2 owns 8 and [9,12). The nodes above them span ranks; every element
// of them is the same float additions in the same order whoever computes it, so the ranks
// split the elements instead (tree_allreduce): rank j gets everyone's owned node sums for
// its 1/R of the elements (alltoallv), sums the top of the tree over them (combine_owned),
// and the ranks allgather those pieces. Every rank ends with the bits one process gets from
// tree_sum over the root, for any R dividing K (and any thread count: adds are elementwise).
//
// Traffic per rank, with n elements and m_r owned nodes: it sends (R-1)/R of its m_r n
// floats and receives about the same, then allgathers n (R-1)/R. When K / R is a power of
// two each rank owns one node, and that is 2 n (R-1)/R floats each way: a ring allreduce's
// volume (docs/scaling.md works out the rest).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ddpm/dist/communicator.h"

namespace ddpm {

struct TreeNode {
  int64_t lo = 0, hi = 0;  // leaves [lo, hi)
  bool operator==(const TreeNode& o) const { return lo == o.lo && hi == o.hi; }
};

// The nodes rank r of R sums alone, left to right (R must divide K).
std::vector<TreeNode> owned_nodes(int64_t K, int R, int r);

// The sum of the leaves under `node` in the tree's order: leaf(i) gives leaf i (all of one
// length), called for i = node.lo, ..., node.hi - 1 in that order. Holds at most one
// partial sum per level of the tree.
using LeafFn = std::function<std::vector<float>(int64_t i)>;
std::vector<float> tree_sum(TreeNode node, const LeafFn& leaf);

// The top of the tree above the owned nodes: nodes[r][j] points at the sum of the j-th
// owned node of rank r (owned_nodes order), all restricted to the same `len` elements.
// The sum of all K leaves over those elements.
std::vector<float> combine_owned(int64_t K, int R, const std::vector<std::vector<const float*>>& nodes, int64_t len);

// Every rank passes the sums of its owned nodes (owned_nodes(K, size, rank), each of n
// floats); every rank gets the sum of all K leaves, the bits of tree_sum({0, K}, leaf).
std::vector<float> tree_allreduce(Communicator& comm, int64_t K, std::vector<std::vector<float>> mine, int64_t n);

}  // namespace ddpm

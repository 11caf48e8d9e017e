#include "ddpm/dist/tree_reduce.h"

#include <algorithm>
#include <cstring>

#include "ddpm/core/check.h"

namespace ddpm {

namespace {

int64_t mid_of(TreeNode n) { return n.lo + (n.hi - n.lo) / 2; }

// Leaves per rank, after checking the split.
int64_t leaves_per_rank(int64_t K, int R) {
  DDPM_CHECK(K >= 1 && R >= 1 && K % R == 0, "tree_reduce: " << K << " leaves cannot be split evenly over " << R
                                                              << " ranks");
  return K / R;
}

// a += b, elementwise: the tree's one operation.
void add_into(std::vector<float>& a, const float* b) {
  float* pa = a.data();
  const int64_t n = static_cast<int64_t>(a.size());
  for (int64_t i = 0; i < n; i++) pa[i] += b[i];
}

void collect(TreeNode node, int64_t per, int r, std::vector<TreeNode>& out) {
  const int64_t owner = node.lo / per;
  if (owner == (node.hi - 1) / per) {  // wholly inside one rank's leaves
    if (owner == r) out.push_back(node);
    return;
  }
  collect({node.lo, mid_of(node)}, per, r, out);
  collect({mid_of(node), node.hi}, per, r, out);
}

struct Combiner {
  int64_t per, len;
  const std::vector<std::vector<const float*>>& nodes;
  std::vector<size_t> next;  // the next owned node of each rank, in walk order

  std::vector<float> eval(TreeNode node) {
    const int64_t owner = node.lo / per;
    if (owner == (node.hi - 1) / per) {
      const size_t r = static_cast<size_t>(owner);
      DDPM_CHECK(next[r] < nodes[r].size(), "combine_owned: rank " << r << " gave " << nodes[r].size() << " node sums");
      const float* p = nodes[r][next[r]++];
      return std::vector<float>(p, p + len);
    }
    std::vector<float> sum = eval({node.lo, mid_of(node)});
    add_into(sum, eval({mid_of(node), node.hi}).data());
    return sum;
  }
};

}  // namespace

std::vector<TreeNode> owned_nodes(int64_t K, int R, int r) {
  const int64_t per = leaves_per_rank(K, R);
  DDPM_CHECK(r >= 0 && r < R, "owned_nodes: rank " << r << " of " << R);
  std::vector<TreeNode> out;
  collect({0, K}, per, r, out);
  return out;
}

std::vector<float> tree_sum(TreeNode node, const LeafFn& leaf) {
  DDPM_CHECK(node.hi > node.lo, "tree_sum: empty node [" << node.lo << ", " << node.hi << ")");
  if (node.hi - node.lo == 1) return leaf(node.lo);
  std::vector<float> sum = tree_sum({node.lo, mid_of(node)}, leaf);
  const std::vector<float> right = tree_sum({mid_of(node), node.hi}, leaf);
  DDPM_CHECK(right.size() == sum.size(), "tree_sum: leaves of " << sum.size() << " and " << right.size() << " elements");
  add_into(sum, right.data());
  return sum;
}

std::vector<float> combine_owned(int64_t K, int R, const std::vector<std::vector<const float*>>& nodes, int64_t len) {
  const int64_t per = leaves_per_rank(K, R);
  DDPM_CHECK(static_cast<int>(nodes.size()) == R && len >= 0, "combine_owned: node sums of " << nodes.size()
                                                                                              << " ranks for " << R);
  Combiner c{per, len, nodes, std::vector<size_t>(static_cast<size_t>(R), 0)};
  std::vector<float> total = c.eval({0, K});
  for (int r = 0; r < R; r++)
    DDPM_CHECK(c.next[r] == nodes[r].size(), "combine_owned: rank " << r << " gave " << nodes[r].size()
                                                                     << " node sums, the tree uses " << c.next[r]);
  return total;
}

std::vector<float> tree_allreduce(Communicator& comm, int64_t K, std::vector<std::vector<float>> mine, int64_t n) {
  const int R = comm.size(), me = comm.rank();
  const size_t m = owned_nodes(K, R, me).size();
  DDPM_CHECK(mine.size() == m, "tree_allreduce: rank " << me << " gave " << mine.size() << " node sums, it owns " << m);
  for (const auto& v : mine)
    DDPM_CHECK(static_cast<int64_t>(v.size()) == n, "tree_allreduce: a node sum of " << v.size() << " elements, not " << n);
  if (R == 1) return std::move(mine[0]);  // the root itself

  // Rank j sums the elements [share_of(n, R, j)]: send it that piece of every owned node.
  std::vector<Share> shards(static_cast<size_t>(R));
  for (int j = 0; j < R; j++) shards[j] = share_of(n, R, j);
  std::vector<float> send(m * static_cast<size_t>(n));
  std::vector<int64_t> send_bytes(static_cast<size_t>(R)), recv_bytes(static_cast<size_t>(R));
  std::vector<size_t> counts(static_cast<size_t>(R));  // owned nodes of each rank
  size_t at = 0;
  for (int j = 0; j < R; j++) {
    for (const auto& v : mine) {
      std::memcpy(send.data() + at, v.data() + shards[j].first, sizeof(float) * static_cast<size_t>(shards[j].count));
      at += static_cast<size_t>(shards[j].count);
    }
    send_bytes[j] = static_cast<int64_t>(m) * shards[j].count * static_cast<int64_t>(sizeof(float));
    counts[j] = owned_nodes(K, R, j).size();
    recv_bytes[j] = static_cast<int64_t>(counts[j]) * shards[me].count * static_cast<int64_t>(sizeof(float));
  }
  mine.clear();
  size_t total_recv = 0;
  for (size_t c : counts) total_recv += c * static_cast<size_t>(shards[me].count);
  std::vector<float> recv(total_recv);
  comm.alltoallv(send.data(), send_bytes, recv.data(), recv_bytes);
  send.clear();
  send.shrink_to_fit();

  std::vector<std::vector<const float*>> nodes(static_cast<size_t>(R));
  at = 0;
  for (int i = 0; i < R; i++)
    for (size_t k = 0; k < counts[i]; k++, at += static_cast<size_t>(shards[me].count)) nodes[i].push_back(recv.data() + at);
  const std::vector<float> piece = combine_owned(K, R, nodes, shards[me].count);

  std::vector<int64_t> piece_counts(static_cast<size_t>(R));
  for (int j = 0; j < R; j++) piece_counts[j] = shards[j].count;
  return allgatherv_floats(comm, piece, piece_counts);
}

}  // namespace ddpm

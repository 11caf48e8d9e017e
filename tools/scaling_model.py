#!/usr/bin/env python3
"""scaling_model.py: the model behind docs/scaling.md's tables (standard library only).

    python3 tools/scaling_model.py            # the markdown tables of docs/scaling.md

Per step on R nodes, with the global batch B split evenly:
  compute(R)   = (B / R) * G / F + c_opt * P        G: training GFLOP per image (counted,
                                                    and for tiny and small equal to what the
                                                    profiler counts), F: a node's sustained
                                                    training GFLOP/s, c_opt * P: clipping,
                                                    Adam and the EMA, which every rank repeats
  ring(R)      = 2 (R-1) a + 2 (R-1)/R * 4P / b    a: latency per message, b: link bytes/s
  tree(R)      = 2 ceil(log2 R) (a + 4P / b)       binomial reduce then broadcast, whole
                                                    vectors (not pipelined)
  ours(R)      = (R-1) a + (m+1) (R-1)/R * 4P / b  alltoallv of the m owned node sums
                 + (R-1) a                          (pairwise), allgatherv of the pieces
                 + (R-1) a                          and the status allgather (ring)
               = ring(R) + (R-1) a  when each rank owns one node (m = 1: K/R a power of 2)
  efficiency   = T(1) / (R T(R)),  T = compute + ours (nothing overlapped, as implemented)
  overlapped   = compute + max(0, ours - (2/3) t_mb): what DDP-style buckets would hide
                 behind the backward pass of a rank's last micro-batch (t_mb its compute).
"""
import math

MODELS = [  # name, parameters, training GFLOP per image
    ("tiny (MNIST, 1.1M)", 1_112_801, 1.14),
    ("small (MNIST, 6.5M)", 6_469_889, 7.19),
    ("Ho et al. CIFAR-10 (35.7M)", 35_746_307, 37.33),
]
LINKS_GBPS = [10, 25, 100]
RANKS = [1, 2, 4, 8, 16, 32, 64]
B = 128          # global batch (the paper's CIFAR-10 batch)
K = 64           # micro-batches: --micro-batch 2, so every R above divides K and K/R is a power of 2
F = 1000.0       # a node's sustained training GFLOP/s (about 16 of this machine's cores, see the doc)
ALPHA = 10e-6    # seconds per message (TCP over Ethernet; RDMA is a few microseconds)
C_OPT = 1.0e-9   # seconds per parameter per step, every rank: clip, Adam, EMA and the gradient copies move
                 # about 100 bytes per parameter, at a node's ~100 GB/s (this VM: 2.2 ns for Adam alone)


def owned_nodes(k, r_count, r):
    """ddpm/dist/tree_reduce.cpp's owned_nodes: the tree nodes rank r sums alone."""
    per = k // r_count
    out = []

    def walk(lo, hi):
        if lo // per == (hi - 1) // per:
            if lo // per == r:
                out.append((lo, hi))
            return
        mid = lo + (hi - lo) // 2
        walk(lo, mid)
        walk(mid, hi)

    walk(0, k)
    return out


def m_max(k, r_count):
    return max(len(owned_nodes(k, r_count, r)) for r in range(r_count))


def times(params, gflop, r, gbps, k=K, batch=B):
    nbytes = 4.0 * params
    beta = 8.0 / (gbps * 1e9)
    compute = batch / r * gflop / F + C_OPT * params
    if r == 1:
        return compute, 0.0, 0.0, 0.0, compute
    ring = 2 * (r - 1) * ALPHA + 2 * (r - 1) / r * nbytes * beta
    tree = 2 * math.ceil(math.log2(r)) * (ALPHA + nbytes * beta)
    m = m_max(k, r)
    ours = 3 * (r - 1) * ALPHA + (m + 1) * (r - 1) / r * nbytes * beta
    t_mb = (batch / k) * gflop / F  # one micro-batch's compute
    overlapped = compute + max(0.0, ours - 2.0 / 3.0 * t_mb)
    return compute, ring, tree, ours, overlapped


def ms(x):
    return f"{1e3 * x:.0f}" if x >= 0.01 else f"{1e3 * x:.1f}"


def main():
    for name, params, gflop in MODELS:
        print(f"\n**{name}**: {gflop} GFLOP per image, {4 * params / 1e6:.1f} MB of gradients\n")
        head = "| R | compute ms | " + " | ".join(
            f"ring / tree / ours ms, {g} Gb/s" for g in LINKS_GBPS) + " | " + " | ".join(
            f"efficiency {g} Gb/s" for g in LINKS_GBPS) + " | overlapped, 10 Gb/s |"
        print(head)
        print("|" + "---|" * (2 + 2 * len(LINKS_GBPS) + 1))
        base = times(params, gflop, 1, LINKS_GBPS[0])[0]
        for r in RANKS:
            cells, effs = [], []
            compute = None
            for g in LINKS_GBPS:
                compute, ring, tree, ours, _ = times(params, gflop, r, g)
                cells.append("-" if r == 1 else f"{ms(ring)} / {ms(tree)} / {ms(ours)}")
                effs.append(f"{100 * base / (r * (compute + ours)):.0f}%")
            over = times(params, gflop, r, 10)[4]
            print(f"| {r} | {ms(compute)} | " + " | ".join(cells) + " | " + " | ".join(effs) +
                  f" | {100 * base / (r * over):.0f}% |")
    print("\nOwned nodes per rank when K/R is not a power of two (K = 96, --batch 96 --micro-batch 1):\n")
    print("| R | " + " | ".join(str(r) for r in (3, 6, 12, 24, 48)) + " |")
    print("|---|" + "---|" * 5)
    print("| most nodes owned by one rank (m) | " + " | ".join(str(m_max(96, r)) for r in (3, 6, 12, 24, 48)) + " |")
    print("| bytes sent per rank / ring allreduce's | " +
          " | ".join(f"{(m_max(96, r) + 1) / 2:.1f}x" for r in (3, 6, 12, 24, 48)) + " |")


if __name__ == "__main__":
    main()

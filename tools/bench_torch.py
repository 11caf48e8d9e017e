#!/usr/bin/python3
"""bench_torch.py: the PyTorch twin of ./bench's model section, for side-by-side ratios.

The same U-Net as ddpm/model/unet.cpp (tiny or small; ddpm/model/nn.h's ResBlock and AttnBlock,
Downsample as a stride-2 conv, Upsample as nearest x2 then a conv), and the same
training step as Trainer::step(): x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps,
L_simple = mse(eps_theta(x_t, t), eps), backward, clip_grad_norm_(1.0), Adam (lr 1e-3),
then an EMA of the weights (decay 0.999). Forward-only is eval mode under no_grad.

    /usr/bin/python3 tools/bench_torch.py [--models tiny,small] [--batches 64,128]
                                         [--threads 1,2] [--steps 5] [--json FILE]
    /usr/bin/python3 tools/bench_torch.py --inference [--batches 256] ...

--inference is sampling's half alone, the twin of ./bench's sample section: the eval-mode
no-grad forward at each batch, as img-steps/s (one network evaluation per image and step;
Algorithm 2's update around it is a few elementwise ops on [N, 1, 28, 28]), the wall time
of --sample-images images x 1000 steps scaled from it, and the peak RSS.

Each (model, batch, threads) runs in its own process (multiprocessing, spawn), so peak
memory (ru_maxrss) is per configuration; peak_rss_delta_mb subtracts the RSS after
`import torch`. Without torch it prints a note and exits 0 (the JSON says skipped).
"""
import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import time

CONFIGS = {
    # name: (ch, ch_mult, num_res_blocks, attn_resolutions, groups, dropout)
    "tiny": (32, (1, 2, 2), 1, (7,), 8, 0.0),
    "small": (64, (1, 2, 2), 2, (14,), 32, 0.1),
}


def rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def build_model(torch, name):
    nn = torch.nn
    F = torch.nn.functional
    ch, ch_mult, num_res_blocks, attn_res, groups, dropout = CONFIGS[name]
    temb_ch = 4 * ch

    def timestep_embedding(t, dim):
        # As ddpm/ops/embedding.cpp: freq_i = exp(-ln(10000) i / (half - 1)); [sin | cos].
        half = dim // 2
        freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
        arg = t.float()[:, None] * freq[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm1 = nn.GroupNorm(groups, cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
            self.temb_proj = nn.Linear(temb_ch, cout)
            self.norm2 = nn.GroupNorm(groups, cout)
            self.dropout = nn.Dropout(dropout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x, temb):
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
            h = self.conv2(self.dropout(F.silu(self.norm2(h))))
            return (self.skip(x) if self.skip is not None else x) + h

    class AttnBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm = nn.GroupNorm(groups, c)
            self.q, self.k, self.v = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
            self.proj_out = nn.Conv2d(c, c, 1)

        def forward(self, x):
            N, C, H, W = x.shape
            h = self.norm(x)
            q, k, v = (m(h).reshape(N, C, H * W) for m in (self.q, self.k, self.v))
            a = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(C), dim=-1)  # [N, P, P]
            out = torch.bmm(v, a.transpose(1, 2)).reshape(N, C, H, W)                   # V A^T
            return x + self.proj_out(out)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense0 = nn.Linear(ch, temb_ch)
            self.dense1 = nn.Linear(temb_ch, temb_ch)
            self.conv_in = nn.Conv2d(1, ch, 3, 1, 1)
            self.down = nn.ModuleList()
            hs_ch, cur, res = [ch], ch, 28
            for i, mult in enumerate(ch_mult):
                level = nn.Module()
                level.blocks, level.attns = nn.ModuleList(), nn.ModuleList()
                for _ in range(num_res_blocks):
                    level.blocks.append(ResBlock(cur, ch * mult))
                    cur = ch * mult
                    if res in attn_res:
                        level.attns.append(AttnBlock(cur))
                    hs_ch.append(cur)
                level.resample = nn.Conv2d(cur, cur, 3, 2, 1) if i + 1 < len(ch_mult) else None
                if level.resample is not None:
                    hs_ch.append(cur)
                    res //= 2
                self.down.append(level)
            self.mid1, self.mid_attn, self.mid2 = ResBlock(cur, cur), AttnBlock(cur), ResBlock(cur, cur)
            self.up = nn.ModuleList()
            for i in reversed(range(len(ch_mult))):
                level = nn.Module()
                level.blocks, level.attns = nn.ModuleList(), nn.ModuleList()
                for _ in range(num_res_blocks + 1):
                    level.blocks.append(ResBlock(cur + hs_ch.pop(), ch * ch_mult[i]))
                    cur = ch * ch_mult[i]
                    if res in attn_res:
                        level.attns.append(AttnBlock(cur))
                level.resample = nn.Conv2d(cur, cur, 3, 1, 1) if i > 0 else None
                if level.resample is not None:
                    res *= 2
                self.up.append(level)
            self.norm_out = nn.GroupNorm(groups, cur)
            self.conv_out = nn.Conv2d(cur, 1, 3, 1, 1)

        def forward(self, x, t):
            temb = self.dense1(F.silu(self.dense0(timestep_embedding(t, ch))))
            h = self.conv_in(x)
            hs = [h]
            for level in self.down:
                for j, block in enumerate(level.blocks):
                    h = block(h, temb)
                    if len(level.attns):
                        h = level.attns[j](h)
                    hs.append(h)
                if level.resample is not None:
                    h = level.resample(h)
                    hs.append(h)
            h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
            for level in self.up:
                for j, block in enumerate(level.blocks):
                    h = block(torch.cat([h, hs.pop()], dim=1), temb)
                    if len(level.attns):
                        h = level.attns[j](h)
                if level.resample is not None:
                    h = level.resample(F.interpolate(h, scale_factor=2, mode="nearest"))
            return self.conv_out(F.silu(self.norm_out(h)))

    return UNet()


def run_config(model_name, batch, threads, steps, queue):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_start = rss_mb("VmRSS")
    model = build_model(torch, model_name)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    beta = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - beta, 0).float()
    data = torch.rand(4 * batch, 1, 28, 28) * 2 - 1

    def train_step(k):
        x0 = data[(k % 4) * batch:(k % 4 + 1) * batch]
        t = torch.randint(1, 1001, (batch,))
        eps = torch.randn_like(x0)
        ab = alpha_bar[t - 1][:, None, None, None]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.mse_loss(model(x_t, t), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for s, p in zip(ema, params):
                s.mul_(0.999).add_(p, alpha=0.001)

    def median(v):
        return sorted(v)[len(v) // 2]

    model.train()
    train_step(0)  # warm-up
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        train_step(k + 1)
        times.append(time.perf_counter() - t0)
    train_s = median(times)

    model.eval()
    x = torch.randn(batch, 1, 28, 28)
    t = torch.tensor([1 + (i * 37) % 1000 for i in range(batch)])
    with torch.no_grad():
        model(x, t)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            model(x, t)
            times.append(time.perf_counter() - t0)
    fwd_s = median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({
        "model": model_name, "batch": batch, "threads": threads, "params": n_params,
        "train_s": train_s, "train_img_per_s": batch / train_s,
        "forward_s": fwd_s, "forward_img_per_s": batch / fwd_s,
        "peak_rss_mb": peak, "peak_rss_delta_mb": peak - rss_start,
        "torch": torch.__version__,
    })


def run_inference(model_name, batch, threads, steps, images, queue):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_start = rss_mb("VmRSS")
    model = build_model(torch, model_name).eval()
    x = torch.randn(batch, 1, 28, 28)
    t = torch.tensor([1 + (i * 37) % 1000 for i in range(batch)])
    with torch.no_grad():
        model(x, t)  # warm-up
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            model(x, t)
            times.append(time.perf_counter() - t0)
    fwd_s = sorted(times)[len(times) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({
        "model": model_name, "batch": batch, "threads": threads, "forward_s": fwd_s,
        "img_steps_per_s": batch / fwd_s, "job_images": images, "job_s": math.ceil(images / batch) * 1000 * fwd_s,
        "peak_rss_mb": peak, "peak_rss_delta_mb": peak - rss_start, "torch": torch.__version__,
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--batches", default="64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default="")
    ap.add_argument("--inference", action="store_true", help="time the no-grad forward only (sampling)")
    ap.add_argument("--sample-images", type=int, default=256, help="with --inference: the job of N images x 1000 steps")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bench_torch: torch is not installed for %s; skipping" % sys.executable)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"skipped": "torch not installed", "rows": []}, f)
        return 0
    ctx = mp.get_context("spawn")
    rows = []
    for model_name in args.models.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            for threads in [int(t) for t in args.threads.split(",")]:
                queue = ctx.Queue()
                if args.inference:
                    proc = ctx.Process(target=run_inference,
                                       args=(model_name, batch, threads, args.steps, args.sample_images, queue))
                else:
                    proc = ctx.Process(target=run_config, args=(model_name, batch, threads, args.steps, queue))
                proc.start()
                row = queue.get()
                proc.join()
                rows.append(row)
                if args.inference:
                    print("torch %-5s batch %4d threads %d  forward %8.1f ms  %7.1f img-steps/s; %d images x 1000 steps: "
                          "%.0f s (scaled)  peak RSS %.0f MB (+%.0f MB)" % (
                              model_name, batch, threads, row["forward_s"] * 1e3, row["img_steps_per_s"],
                              row["job_images"], row["job_s"], row["peak_rss_mb"], row["peak_rss_delta_mb"]), flush=True)
                    continue
                print("torch %-5s batch %4d threads %d  train %8.1f ms %7.1f img/s  forward %7.1f img/s  "
                      "peak RSS %.0f MB (+%.0f MB)" % (model_name, batch, threads, row["train_s"] * 1e3,
                                                      row["train_img_per_s"], row["forward_img_per_s"],
                                                      row["peak_rss_mb"], row["peak_rss_delta_mb"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
        print("bench_torch: wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench_compare.py: ./bench against tools/bench_torch.py, one configuration at a time.

For each (model, batch, threads) it runs ./bench's model section and then the PyTorch
twin right after, so both see about the same machine load, and prints the ratio table
ours / PyTorch (training img/s, forward img/s, peak memory). `make bench-compare` runs
it; the machine is shared, so read the ratios, not the absolute numbers.

    /usr/bin/python3 tools/bench_compare.py [--models tiny,small] [--batches 64,128]
        [--threads 1,2] [--steps 3] [--bench ./bench] [--json build/bench_compare.json]
        [--sample-batches 256] [--sample-steps 10]

Sampling is compared too: ./bench's sample section (Algorithm 2 through UNetInference) against
bench_torch.py --inference (the no-grad forward), per model, --sample-batches size and thread
count, as img-steps/s and the scaled wall time of 256 images x 1000 steps. `make bench` runs
only that table, on the rows ./bench just wrote: --sample-only --sample-from build/bench.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_ours(bench, model, batch, threads, steps):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([bench, "--only", "model", "--models", model, "--batches", str(batch), "--threads",
                        str(threads), "--steps", str(steps), "--reps", "3", "--json", f.name], check=True)
        rows = json.load(open(f.name))["rows"]
    out = {"ops": {}}
    prefix = "%s batch %d " % (model, batch)
    for r in rows:
        if r["section"] == "peak":
            out["peak_gflops"] = r["gflops"]
        elif r["section"] == "model":
            what = r["name"][len(prefix):]
            if what == "train":
                out["train_img_per_s"] = r["img_per_s"]
                out["train_gflops"] = r["gflops"]
                out["train_pct_peak"] = r["pct_peak"]
            elif what == "forward":
                out["forward_img_per_s"] = r["img_per_s"]
            elif what == "memory":
                out["peak_rss_mb"] = r["peak_rss_mb"]
                out["peak_rss_delta_mb"] = r.get("peak_rss_delta_mb", r["peak_rss_mb"])
        elif r["section"] == "ops":
            out["ops"][r["name"][len(prefix):]] = r
    return out


def sample_rows(rows, model, batch, threads):
    """Our sample section's figures for one configuration, from ./bench's JSON rows."""
    out = {}
    prefix = "%s batch %d " % (model, batch)
    for r in rows:
        if r["section"] != "sample" or r["threads"] != threads or not r["name"].startswith(prefix):
            continue
        what = r["name"][len(prefix):]
        if what == "algorithm2":
            out.update(img_steps_per_s=r["img_steps_per_s"], job_s=r["job_s"], job_images=r["job_images"],
                       job_measured=r.get("job_measured", 0), pct_peak=r.get("pct_peak", 0))
        elif what == "tape forward":
            out["tape_img_per_s"] = r["img_per_s"]
        elif what == "memory":
            out["peak_rss_mb"] = r["peak_rss_mb"]
    return out or None


def run_ours_sample(bench, model, batch, threads, steps):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([bench, "--only", "sample", "--models", model, "--sample-batches", str(batch), "--threads",
                        str(threads), "--sample-steps", str(steps), "--reps", "3", "--json", f.name], check=True)
        return sample_rows(json.load(open(f.name))["rows"], model, batch, threads)


def run_torch_sample(model, batch, threads, steps):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, os.path.join(HERE, "bench_torch.py"), "--inference", "--models", model,
                        "--batches", str(batch), "--threads", str(threads), "--steps", str(steps), "--json", f.name],
                       check=True)
        data = json.load(open(f.name))
    return data["rows"][0] if data.get("rows") else None


def markdown_table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_sample_table(samples):
    print()
    print("Sampling (Algorithm 2; PyTorch: its no-grad forward at the same batch; the job is 256 images x 1000 steps,")
    print("scaled from the timed steps unless marked measured):")
    print()
    rows = []
    for r in samples:
        o, t = r["ours"], r["torch"] or {}
        rows.append([
            r["model"], "%d" % r["batch"], "%d" % r["threads"], "%.1f" % o["img_steps_per_s"],
            "%.1f" % t["img_steps_per_s"] if t else "-",
            "%.2f" % (o["img_steps_per_s"] / t["img_steps_per_s"]) if t else "-", "%.0f%%" % o.get("pct_peak", 0),
            "%.0f%s" % (o["job_s"], " (measured)" if o.get("job_measured") else ""), "%.0f" % t["job_s"] if t else "-",
            "%.1f" % o.get("tape_img_per_s", 0), "%.0f" % o.get("peak_rss_mb", 0),
            "%.0f" % t["peak_rss_mb"] if t else "-"])
    markdown_table(["config", "batch", "threads", "img-steps/s ours", "PyTorch", "ratio", "% of FMA peak ours",
                    "job s ours", "PyTorch", "tape forward img/s (before)", "peak RSS MB ours", "PyTorch"], rows)


def run_torch(model, batch, threads, steps):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, os.path.join(HERE, "bench_torch.py"), "--models", model, "--batches",
                        str(batch), "--threads", str(threads), "--steps", str(steps), "--json", f.name], check=True)
        data = json.load(open(f.name))
    return data["rows"][0] if data.get("rows") else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,small")
    ap.add_argument("--batches", default="64,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--bench", default="./bench")
    ap.add_argument("--json", default="")
    ap.add_argument("--sample-batches", default="256", help="sampling batch sizes to compare ('' for none)")
    ap.add_argument("--sample-steps", type=int, default=10, help="Algorithm 2 steps per timed sampling run")
    ap.add_argument("--sample-only", action="store_true", help="only the sampling table")
    ap.add_argument("--sample-from", default="", help="take our sampling figures from this ./bench JSON")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        print("bench_compare: torch is not installed for %s; PyTorch columns skipped" % sys.executable)
        have_torch = False
    samples = []
    if args.sample_from:  # the configurations that run measured
        our_rows = json.load(open(args.sample_from))["rows"]
        configs = []
        for r in our_rows:
            if r["section"] == "sample" and r["name"].endswith(" algorithm2"):
                model, _, batch = r["name"][:-len(" algorithm2")].split(" ")
                configs.append((model, int(batch), r["threads"]))
    else:
        configs = [(m, int(b), int(t)) for m in args.models.split(",") for b in args.sample_batches.split(",") if b
                   for t in args.threads.split(",")]
    for model, batch, threads in configs:
        if args.sample_from:
            ours = sample_rows(our_rows, model, batch, threads)
        else:
            ours = run_ours_sample(args.bench, model, batch, threads, args.sample_steps)
        theirs = run_torch_sample(model, batch, threads, 5) if have_torch else None
        samples.append({"model": model, "batch": batch, "threads": threads, "ours": ours, "torch": theirs})
    if args.sample_only:
        print_sample_table(samples)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"samples": samples}, f, indent=1)
        return 0
    results = []
    for model in args.models.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            for threads in [int(t) for t in args.threads.split(",")]:
                ours = run_ours(args.bench, model, batch, threads, args.steps)
                theirs = run_torch(model, batch, threads, args.steps) if have_torch else None
                results.append({"model": model, "batch": batch, "threads": threads, "ours": ours, "torch": theirs})

    def ratio(a, b):
        return "%.2f" % (a / b) if a and b else "-"

    print()
    rows = []
    for r in results:
        o, t = r["ours"], r["torch"] or {}
        rows.append([
            r["model"], "%d" % r["batch"], "%d" % r["threads"], "%.1f" % o["train_img_per_s"],
            "%.1f" % t["train_img_per_s"] if t else "-", ratio(o["train_img_per_s"], t.get("train_img_per_s")),
            "%.1f" % o["forward_img_per_s"], "%.1f" % t["forward_img_per_s"] if t else "-",
            ratio(o["forward_img_per_s"], t.get("forward_img_per_s")),
            "%.0f" % o["peak_rss_mb"], "%.0f" % t["peak_rss_mb"] if t else "-",
            ratio(o["peak_rss_mb"], t.get("peak_rss_mb"))])
    markdown_table(["config", "batch", "threads", "train img/s ours", "PyTorch", "ratio", "forward img/s ours",
                    "PyTorch", "ratio", "peak RSS MB ours", "PyTorch", "ratio"], rows)
    print()
    print("Thread scaling (training img/s, 2 threads / 1 thread):")
    for model in args.models.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            by_t = {r["threads"]: r for r in results if r["model"] == model and r["batch"] == batch}
            if 1 in by_t and 2 in by_t:
                o1, o2 = by_t[1]["ours"], by_t[2]["ours"]
                t1, t2 = by_t[1]["torch"], by_t[2]["torch"]
                print("  %-5s batch %4d  ours %.2fx  PyTorch %s" % (
                    model, batch, o2["train_img_per_s"] / o1["train_img_per_s"],
                    "%.2fx" % (t2["train_img_per_s"] / t1["train_img_per_s"]) if t1 and t2 else "-"))
    print()
    print("Per-op breakdown of our training step (time share; GFLOP/s and % of the FMA peak measured")
    print("in the same run, for the ops that count flops):")
    for r in results:
        o = r["ours"]
        print()
        print("%s, batch %d, %d thread%s (FMA peak %.0f GFLOP/s; whole step %.1f GFLOP/s = %.0f%% of it):" % (
            r["model"], r["batch"], r["threads"], "s" if r["threads"] > 1 else "", o.get("peak_gflops", 0),
            o.get("train_gflops", 0), o.get("train_pct_peak", 0)))
        print()
        print("| op | ms/step | share | GFLOP/s | % of peak |")
        print("|---|---|---|---|---|")
        for name, row in o["ops"].items():
            print("| %s | %.1f | %.1f%% | %s | %s |" % (
                name, row["median_s"] * 1e3, row["share_pct"],
                "%.1f" % row["gflops"] if "gflops" in row else "",
                "%.0f%%" % row["pct_peak"] if "pct_peak" in row else ""))
    print_sample_table(samples)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "samples": samples}, f, indent=1)
        print("bench_compare: wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

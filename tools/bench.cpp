// bench: how fast this machine runs ddpm's kernels, against its own measured FMA peak.
//
//   ./bench [--json FILE] [--threads 1,2] [--reps N] [--only SECTION]
//           [--models tiny,small,cifar10] [--batches 64,128] [--steps N]
//
// Sections (each a function below, registered in kSections; add new ones there):
//   peak   the FMA peak per thread count: every thread runs independent FMA chains
//          (enough accumulators to cover the FMA latency) on registers only.
//   bandwidth  main-memory bandwidth per thread count: every thread runs y += a x (axpy)
//          over its own 64 MB arrays, far past the caches. The memory-bound ops
//          (GroupNorm, elementwise, packing) cannot scale past its 2-thread/1-thread ratio.
//   sgemm  GFLOP/s and % of peak for the U-Net's GEMM shapes: each conv level's
//          forward (M = OC, N = OH*OW, K = C*9), backward-data (op(A) transposed:
//          M = C*9, N = P, K = OC) and backward-weight (op(B) transposed: M = OC,
//          N = C*9, K = batch*P), plus a linear layer and 1024^3.
//   conv   conv2d's forward, backward-data and backward-weight as ops (im2col or
//          implicit GEMM, copies included) at each 3x3 level of tiny and small, batch 64.
//   model  per model, batch and thread count: training img/s through Trainer::step()
//          (forward, backward, gradient clipping, Adam, EMA: the step ./train_mnist
//          runs, on random images), forward-only img/s (no grad, eval mode: the
//          sampling cost), peak resident memory of that configuration (each runs in
//          its own forked process, so peaks do not mix), and a per-op breakdown of the
//          training step (ddpm/core/profile.h: time share, GFLOP/s, % of the FMA peak; conv
//          per resolution), and of the forward pass.
//   sample per model, thread count and --sample-batches size: Algorithm 2 through the
//          sampling path (app/sampling.h's unet_model: UNetInference, no tape) for
//          --sample-steps steps, as img-steps/s; the wall time of --sample-images images x
//          1000 steps, scaled from those steps (measured outright with --sample-steps 1000);
//          the tape's no-grad forward at the same batch (what sampling ran before); peak
//          RSS of the sampling (its own forked process, taken before that tape forward); and
//          the per-op breakdown of the inference pass (time summed over the threads).
// Every section adds rows to one Report, printed and written as JSON.
//
// Every figure is the median of --reps timed runs after one warm-up run; the machine
// is shared, so medians, not means.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"
#include "ddpm/app/sampling.h"
#include "ddpm/diffusion/algorithms.h"
#include "ddpm/core/kernels.h"
#include "ddpm/ops/conv.h"
#include "ddpm/core/parallel.h"
#include "ddpm/core/profile.h"
#include "ddpm/core/rng.h"
#include "ddpm/core/simd.h"
#include "ddpm/train/trainer.h"
#include "ddpm/model/unet.h"
#include "ddpm/model/unet_inference.h"

using namespace ddpm;

namespace {

struct Options {
  std::string json_path;
  std::vector<int> threads = {1, 2};
  int reps = 7;
  std::string only;  // run one section
  std::vector<std::string> models = {"tiny"};
  std::vector<int> batches = {64};
  int steps = 5;  // timed training steps (and forward passes) per model configuration
  std::vector<int> sample_batches = {256};
  int sample_steps = 10;     // Algorithm 2 steps timed per sampling configuration
  int sample_images = 256;   // the sampling job whose 1000-step wall time is reported
  bool sample_tape = true;   // also time the tape's forward at the same batch
};

// One measurement: a name, a thread count, a median time and derived figures.
struct Row {
  std::string section, name;
  int threads = 1;
  double median_s = 0.0;
  std::map<std::string, double> values;  // gflops, pct_peak, M, N, K, img_per_s ...
};

struct Report {
  std::vector<Row> rows;
  std::map<int, double> peak_gflops;  // thread count -> measured FMA peak
  void add(const Row& r) { rows.push_back(r); }
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median wall time of fn over reps runs, after one warm-up run.
double median_time(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; i++) {
    double t0 = now_s();
    fn();
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// ---------------------------------------------------------------------------
// peak: FMA throughput per thread count.

// kChains independent accumulators: each FMA depends only on its own chain, so with
// kChains >= latency x FMA ports the FMA units never wait. Returns a checksum so the
// work cannot be optimized away.
constexpr int kChains = 16;
float fma_chains(int64_t iters) {
  using namespace simd;
  Vec acc[kChains];
  for (int c = 0; c < kChains; c++) acc[c] = set1(1.0f + c * 1e-3f);
  const Vec a = set1(0.999999f), b = set1(1e-7f);
  for (int64_t i = 0; i < iters; i++)
    for (int c = 0; c < kChains; c++) acc[c] = mul_add(acc[c], a, b);
  Vec s = zero();
  for (int c = 0; c < kChains; c++) s = add(s, acc[c]);
  return reduce_sum(s);
}

void section_peak(const Options& opt, Report& report) {
  const int64_t iters = 20'000'000 / simd::kLanes;
  const double flops_per_thread = 2.0 * kChains * simd::kLanes * iters;
  for (int threads : opt.threads) {
    std::atomic<float> sink{0.0f};
    // Plain std::threads: each runs exactly one chain set, started together.
    double t = median_time(opt.reps, [&] {
      std::vector<std::thread> pool;
      for (int i = 0; i < threads; i++) pool.emplace_back([&] { sink = sink + fma_chains(iters); });
      for (auto& th : pool) th.join();
    });
    Row r{"peak", std::string("fma ") + simd::kTarget, threads, t, {}};
    r.values["gflops"] = threads * flops_per_thread / t / 1e9;
    report.peak_gflops[threads] = r.values["gflops"];
    std::printf("peak  %-28s threads %d  %8.1f GFLOP/s\n", r.name.c_str(), threads, r.values["gflops"]);
    report.add(r);
  }
}

// ---------------------------------------------------------------------------
// bandwidth: y += a x on arrays far larger than the caches, one pair per thread.

void section_bandwidth(const Options& opt, Report& report) {
  const int64_t n = int64_t(16) << 20;  // floats per array: 64 MB
  const double bytes_per_thread = 3.0 * sizeof(float) * double(n);  // read x and y, write y
  for (int threads : opt.threads) {
    std::vector<std::vector<float>> x(threads, std::vector<float>(n, 1.0f)), y(threads, std::vector<float>(n, 0.0f));
    double t = median_time(opt.reps, [&] {
      std::vector<std::thread> pool;
      for (int i = 0; i < threads; i++) pool.emplace_back([&, i] { axpy(y[i].data(), 1e-3f, x[i].data(), n); });
      for (auto& th : pool) th.join();
    });
    Row r{"bandwidth", "axpy 64 MB", threads, t, {}};
    r.values["gb_per_s"] = threads * bytes_per_thread / t / 1e9;
    std::printf("bandwidth  %-23s threads %d  %8.1f GB/s\n", r.name.c_str(), threads, r.values["gb_per_s"]);
    report.add(r);
  }
}

// ---------------------------------------------------------------------------
// sgemm: the U-Net's GEMM shapes.

struct GemmShape {
  std::string name;
  bool trans_a, trans_b;
  int64_t M, N, K;
};

// Conv 3x3 at one level of the U-Net (C in, OC out, P = OH*OW positions, `batch`
// images): the three GEMMs of ops/conv (see ddpm/ops/conv.h).
void add_conv_level(std::vector<GemmShape>& shapes, const std::string& level, int64_t C, int64_t OC, int64_t P,
                    int64_t batch) {
  const int64_t CKK = C * 9;
  shapes.push_back({level + " fwd", false, false, OC, P, CKK});
  shapes.push_back({level + " bwd-data", true, false, CKK, P, OC});
  shapes.push_back({level + " bwd-weight", false, true, OC, CKK, batch * P});
}

std::vector<GemmShape> gemm_shapes() {
  std::vector<GemmShape> s;
  // `small` (ch 64, ch_mult 1,2,2) at batch 64: 28x28 with 64 channels, 14x14 and
  // 7x7 with 128, and an up-path conv at 7x7 on concatenated channels (256 -> 128).
  add_conv_level(s, "small 28x28 64->64", 64, 64, 784, 64);
  add_conv_level(s, "small 14x14 128->128", 128, 128, 196, 64);
  add_conv_level(s, "small 7x7 128->128", 128, 128, 49, 64);
  add_conv_level(s, "small 7x7 256->128", 256, 128, 49, 64);
  // `tiny` (ch 32): its first level.
  add_conv_level(s, "tiny 28x28 32->32", 32, 32, 784, 64);
  s.push_back({"linear 64x128->512", false, true, 64, 512, 128});  // time embedding MLP
  s.push_back({"square 1024", false, false, 1024, 1024, 1024});
  return s;
}

void section_sgemm(const Options& opt, Report& report) {
  for (const GemmShape& g : gemm_shapes()) {
    std::vector<float> A(g.M * g.K), B(g.K * g.N), C(g.M * g.N);
    fill_normal(A.data(), A.size(), RngKey{1, 0});
    fill_normal(B.data(), B.size(), RngKey{2, 0});
    const int64_t lda = g.trans_a ? g.M : g.K, ldb = g.trans_b ? g.K : g.N;
    const double flops = 2.0 * g.M * g.N * g.K;
    for (int threads : opt.threads) {
      set_num_threads(threads);
      // Repeat small GEMMs within one timed run so each run lasts about 20 ms.
      const int64_t inner = std::max<int64_t>(1, static_cast<int64_t>(20e-3 * 100e9 * threads / flops));
      double t = median_time(opt.reps, [&] {
        for (int64_t i = 0; i < inner; i++)
          sgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, A.data(), lda, B.data(), ldb, C.data(), g.N, false);
      }) / inner;
      Row r{"sgemm", g.name, threads, t, {}};
      r.values["M"] = g.M;
      r.values["N"] = g.N;
      r.values["K"] = g.K;
      r.values["gflops"] = flops / t / 1e9;
      const double peak = report.peak_gflops.count(threads) ? report.peak_gflops[threads] : 0.0;
      r.values["pct_peak"] = peak > 0 ? 100.0 * r.values["gflops"] / peak : 0.0;
      std::printf("sgemm %-28s %c%c M %5lld N %5lld K %6lld  threads %d  %9.3f ms  %7.1f GFLOP/s  %5.1f%% of peak\n",
                  g.name.c_str(), g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', static_cast<long long>(g.M),
                  static_cast<long long>(g.N), static_cast<long long>(g.K), threads, t * 1e3, r.values["gflops"],
                  r.values["pct_peak"]);
      report.add(r);
    }
  }
  set_num_threads(1);
}

// ---------------------------------------------------------------------------
// conv: conv2d's three passes, op-level (im2col or implicit GEMM, transposes and all),
// at the U-Net's 3x3 levels, batch 64.

struct ConvCase {
  std::string name;
  int64_t C, OC, HW;
};

void section_conv(const Options& opt, Report& report) {
  const std::vector<ConvCase> cases = {
      {"tiny 28x28 32->32", 32, 32, 28},     {"tiny 14x14 64->64", 64, 64, 14},
      {"tiny 7x7 64->64", 64, 64, 7},        {"small 28x28 64->64", 64, 64, 28},
      {"small 14x14 128->128", 128, 128, 14}, {"small 7x7 128->128", 128, 128, 7},
      {"small 7x7 256->128", 256, 128, 7}};
  for (const ConvCase& c : cases) {
    const Conv2dSize s{64, c.C, c.HW, c.HW, c.OC, 3, 1, 1};
    const int64_t P = s.OH() * s.OW();
    std::vector<float> x(s.N * s.C * s.H * s.W), w(s.OC * s.C * 9), b(s.OC), out(s.N * s.OC * P), dout(out.size()),
        dx(x.size()), dw(w.size());
    fill_normal(x.data(), x.size(), RngKey{5, 0});
    fill_normal(w.data(), w.size(), RngKey{6, 0});
    fill_normal(dout.data(), dout.size(), RngKey{7, 0});
    const double flops = 2.0 * s.N * s.OC * P * s.C * 9;
    struct Pass {
      const char* name;
      std::function<void()> run;
    };
    const Pass passes[] = {
        {"fwd", [&] { conv2d_forward(out.data(), x.data(), w.data(), b.data(), s); }},
        {"bwd-data", [&] { conv2d_backward(dx.data(), nullptr, nullptr, dout.data(), x.data(), w.data(), s); }},
        {"bwd-weight", [&] { conv2d_backward(nullptr, dw.data(), nullptr, dout.data(), x.data(), w.data(), s); }}};
    for (const Pass& pass : passes)
      for (int threads : opt.threads) {
        set_num_threads(threads);
        const double t = median_time(opt.reps, pass.run);
        Row r{"conv", c.name + " " + pass.name, threads, t, {}};
        r.values["gflops"] = flops / t / 1e9;
        const double peak = report.peak_gflops.count(threads) ? report.peak_gflops[threads] : 0.0;
        r.values["pct_peak"] = peak > 0 ? 100.0 * r.values["gflops"] / peak : 0.0;
        std::printf("conv  %-36s threads %d  %9.3f ms  %7.1f GFLOP/s  %5.1f%% of peak\n", r.name.c_str(), threads,
                    t * 1e3, r.values["gflops"], r.values["pct_peak"]);
        report.add(r);
      }
  }
  set_num_threads(1);
}

// ---------------------------------------------------------------------------
// model: whole-model training and forward throughput, per-op breakdown, peak memory.

// Resident memory from /proc/self/status: "VmRSS" (now) or "VmHWM" (the peak), in MB.
double proc_status_mb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(f, line))
    if (line.compare(0, key.size(), key) == 0) return std::atof(line.c_str() + key.size()) / 1024.0;
  return 0.0;
}

// Resets VmHWM to the current RSS (Linux's clear_refs "5"); false where unsupported.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return static_cast<bool>(f);
}

// A configuration's memory: the peak RSS of its (forked) process since the probe was made.
struct MemoryProbe {
  double rss_start = proc_status_mb("VmRSS");
  bool peak_ok = reset_peak_rss();  // VmHWM reset to the current RSS
  Row row(const std::string& section, const std::string& name, int threads) const {
    Row mem{section, name + " memory", threads, 0.0, {}};
    mem.values["peak_rss_mb"] = proc_status_mb("VmHWM");
    if (peak_ok) mem.values["peak_rss_delta_mb"] = mem.values["peak_rss_mb"] - rss_start;
    return mem;
  }
};

double peak_of(const std::map<int, double>& peak_gflops, int threads) {
  return peak_gflops.count(threads) ? peak_gflops.at(threads) : 0.0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// One (model, batch, threads) configuration, in the calling process.
std::vector<Row> run_model(const Options& opt, const std::string& model, int batch, int threads,
                           const std::map<int, double>& peak_gflops) {
  set_num_threads(threads);
  const MemoryProbe memory;
  const std::string name = model + " batch " + std::to_string(batch);
  std::vector<Row> rows;

  // Training: Trainer::step() on random images in [-1, 1] (4 batches' worth).
  TrainConfig tc;
  tc.model = model;
  tc.batch = batch;
  const UNetConfig mc = tc.model_config();  // the model's own image size and channels (cifar10: 32x32x3)
  Dataset data;
  data.images = Tensor({4 * static_cast<int64_t>(batch), mc.in_ch, mc.image_size, mc.image_size});
  fill_uniform(data.images.data(), data.images.numel(), RngKey{3, 0});
  for (int64_t i = 0; i < data.images.numel(); i++) data.images[i] = 2.0f * data.images[i] - 1.0f;
  data.labels.assign(data.images.size(0), 0);
  Trainer trainer(tc, data);
  trainer.step();  // warm-up: fills the buffer cache and the sgemm scratch
  profile_reset();
  profile_enable(true);
  std::vector<double> times;
  for (int i = 0; i < opt.steps; i++) {
    const double t0 = now_s();
    trainer.step();
    times.push_back(now_s() - t0);
  }
  profile_enable(false);
  double total_s = 0.0;
  for (double t : times) total_s += t;
  const double train_s = median(times);
  Row train{"model", name + " train", threads, train_s, {}};
  train.values["img_per_s"] = batch / train_s;

  // Per-op breakdown over the timed steps: per op (summed over resolutions), then conv
  // per resolution. Shares are of the total step time; "other" is the rest (the tape,
  // loss, zero_grad, gradient clipping, EMA, data).
  const double peak = peak_of(peak_gflops, threads);
  std::map<ProfileKey, ProfileTotal> totals = profile_totals();
  std::map<ProfileOp, ProfileTotal> per_op;
  double counted_s = 0.0, step_flops = 0.0;
  for (const auto& kv : totals) {
    ProfileTotal& t = per_op[kv.first.first];
    t.seconds += kv.second.seconds;
    t.flops += kv.second.flops;
    t.calls += kv.second.calls;
    counted_s += kv.second.seconds;
    step_flops += kv.second.flops;
  }
  train.values["gflop_per_image"] = step_flops / opt.steps / batch / 1e9;
  train.values["gflops"] = step_flops / total_s / 1e9;
  train.values["pct_peak"] = peak > 0 ? 100.0 * train.values["gflops"] / peak : 0.0;
  rows.push_back(train);
  auto op_row = [&](const std::string& op_name, const ProfileTotal& t) {
    Row r{"ops", name + " " + op_name, threads, t.seconds / opt.steps, {}};
    r.values["share_pct"] = 100.0 * t.seconds / total_s;
    if (t.flops > 0) {
      r.values["gflops"] = t.flops / t.seconds / 1e9;
      r.values["pct_peak"] = peak > 0 ? 100.0 * r.values["gflops"] / peak : 0.0;
    }
    rows.push_back(r);
  };
  for (const auto& kv : per_op) op_row(profile_op_name(kv.first), kv.second);
  ProfileTotal other;
  other.seconds = std::max(0.0, total_s - counted_s);
  op_row("other", other);
  for (const auto& kv : totals) {
    const ProfileOp op = kv.first.first;
    if (op == ProfileOp::conv_forward || op == ProfileOp::conv_backward_data ||
        op == ProfileOp::conv_backward_weight) {
      const int64_t res = kv.second.calls ? kv.first.second : 0;
      op_row(std::string(profile_op_name(op)) + " " + std::to_string(res) + "x" + std::to_string(res), kv.second);
    }
  }

  // Forward only: eval mode, no tape; what sampling pays per denoising step.
  UNet& unet = trainer.model();
  Tensor x({batch, mc.in_ch, mc.image_size, mc.image_size});
  fill_normal(x.data(), x.numel(), RngKey{4, 0});
  std::vector<int64_t> t(batch);
  for (int i = 0; i < batch; i++) t[i] = 1 + (i * 37) % 1000;
  auto forward = [&] {
    Tape tape = Tape::no_grad();
    unet.forward(tape, constant(x), t, ForwardContext{});
  };
  forward();
  times.clear();
  profile_reset();
  profile_enable(true);
  for (int i = 0; i < opt.steps; i++) {
    const double t0 = now_s();
    forward();
    times.push_back(now_s() - t0);
  }
  profile_enable(false);
  Row fwd{"model", name + " forward", threads, median(times), {}};
  fwd.values["img_per_s"] = batch / fwd.median_s;
  rows.push_back(fwd);
  // The forward pass's own breakdown (what sampling pays): time share per op.
  double fwd_total_s = 0.0, fwd_counted_s = 0.0;
  for (double t : times) fwd_total_s += t;
  std::map<ProfileOp, ProfileTotal> fwd_ops;
  for (const auto& kv : profile_totals()) {
    fwd_ops[kv.first.first].seconds += kv.second.seconds;
    fwd_ops[kv.first.first].flops += kv.second.flops;
    fwd_counted_s += kv.second.seconds;
  }
  auto fwd_row = [&](const std::string& op_name, const ProfileTotal& t) {
    Row r{"fwd-ops", name + " " + op_name, threads, t.seconds / opt.steps, {}};
    r.values["share_pct"] = 100.0 * t.seconds / fwd_total_s;
    if (t.flops > 0) {
      r.values["gflops"] = t.flops / t.seconds / 1e9;
      r.values["pct_peak"] = peak > 0 ? 100.0 * r.values["gflops"] / peak : 0.0;
    }
    rows.push_back(r);
  };
  for (const auto& kv : fwd_ops) fwd_row(profile_op_name(kv.first), kv.second);
  ProfileTotal fwd_other;
  fwd_other.seconds = std::max(0.0, fwd_total_s - fwd_counted_s);
  fwd_row("other", fwd_other);

  rows.push_back(memory.row("model", name, threads));
  set_num_threads(1);
  return rows;
}

// Rows through a pipe, one per line: section, name, threads, median_s, then key value
// pairs, tab-separated.
std::string encode_rows(const std::vector<Row>& rows) {
  std::ostringstream os;
  os.precision(9);
  for (const Row& r : rows) {
    os << r.section << '\t' << r.name << '\t' << r.threads << '\t' << r.median_s;
    for (const auto& kv : r.values) os << '\t' << kv.first << '\t' << kv.second;
    os << '\n';
  }
  return os.str();
}

std::vector<Row> decode_rows(const std::string& text) {
  std::vector<Row> rows;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string field;
    while (std::getline(ls, field, '\t')) f.push_back(field);
    if (f.size() < 4) continue;
    Row r{f[0], f[1], std::atoi(f[2].c_str()), std::atof(f[3].c_str()), {}};
    for (size_t i = 4; i + 1 < f.size(); i += 2) r.values[f[i]] = std::atof(f[i + 1].c_str());
    rows.push_back(r);
  }
  return rows;
}

// Runs run(...) in a forked child so each configuration's peak memory is its own.
// (Safe: the parent's thread pool is down to the caller's thread before each fork.)
std::vector<Row> run_forked(const std::string& what, const std::function<std::vector<Row>()>& run) {
  std::fflush(stdout);
  int fds[2];
  DDPM_CHECK(pipe(fds) == 0, "bench: pipe failed");
  const pid_t pid = fork();
  DDPM_CHECK(pid >= 0, "bench: fork failed");
  if (pid == 0) {
    close(fds[0]);
    int status = 0;
    try {
      const std::string text = encode_rows(run());
      if (write(fds[1], text.data(), text.size()) != static_cast<ssize_t>(text.size())) status = 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench: %s: %s\n", what.c_str(), e.what());
      status = 1;
    }
    close(fds[1]);
    std::fflush(stdout);
    _exit(status);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) text.append(buf, got);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  DDPM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench: the " << what << " run failed");
  return decode_rows(text);
}

std::vector<Row> run_model_forked(const Options& opt, const std::string& model, int batch, int threads,
                                  const std::map<int, double>& peak_gflops) {
  return run_forked(model + " batch " + std::to_string(batch),
                    [&] { return run_model(opt, model, batch, threads, peak_gflops); });
}

// One row of the model or sample section: a throughput (img/s, or img-steps/s with the
// sampling job's time), a memory peak, or one op of a breakdown.
void print_model_row(const Row& r, const Options& opt) {
  auto v = [&](const char* k) { return r.values.count(k) ? r.values.at(k) : 0.0; };
  const char* unit = r.section == "model" ? "ms" : "ms/pass";
  if (r.values.count("img_steps_per_s")) {
    std::printf("%-6s %-30s threads %d  %8.1f ms/step  %7.1f img-steps/s  %5.1f%% of peak; %g images x 1000 steps: "
                "%.0f s (%s)\n",
                r.section.c_str(), r.name.c_str(), r.threads, r.median_s * 1e3, v("img_steps_per_s"), v("pct_peak"),
                v("job_images"), v("job_s"),
                v("job_measured") > 0 ? "measured" : ("scaled from " + std::to_string(opt.sample_steps) + " steps").c_str());
  } else if (r.values.count("img_per_s")) {
    std::printf("%-6s %-30s threads %d  %9.1f %-7s %7.1f img/s", r.section.c_str(), r.name.c_str(), r.threads,
                r.median_s * 1e3, unit, v("img_per_s"));
    if (r.values.count("gflops"))
      std::printf("  %.3f GFLOP/img  %6.1f GFLOP/s  %5.1f%% of peak", v("gflop_per_image"), v("gflops"), v("pct_peak"));
    std::printf("\n");
  } else if (r.values.count("peak_rss_mb")) {
    std::printf("%-6s %-30s threads %d  peak RSS %.0f MB (+%.0f MB in this run)\n", r.section.c_str(), r.name.c_str(),
                r.threads, v("peak_rss_mb"), v("peak_rss_delta_mb"));
  } else {
    const char* label = r.section == "ops" ? "op " : r.section == "fwd-ops" ? "fwd" : "inf";
    std::printf("  %s %-36s threads %d  %8.2f ms/%s  %5.1f%%", label, r.name.c_str(), r.threads, r.median_s * 1e3,
                r.section == "ops" ? "step" : "pass", v("share_pct"));
    if (r.values.count("gflops")) std::printf("  %7.1f GFLOP/s  %5.1f%% of peak", v("gflops"), v("pct_peak"));
    std::printf("\n");
  }
}

void section_model(const Options& opt, Report& report) {
  set_num_threads(1);
  for (const std::string& model : opt.models)
    for (int batch : opt.batches)
      for (int threads : opt.threads) {
        for (const Row& r : run_model_forked(opt, model, batch, threads, report.peak_gflops)) {
          report.add(r);
          print_model_row(r, opt);
        }
        std::fflush(stdout);
      }
}

// ---------------------------------------------------------------------------
// sample: Algorithm 2 through the sampling path, per model, threads and batch.

// One (model, batch, threads) sampling configuration, in the calling process.
std::vector<Row> run_sample(const Options& opt, const std::string& model, int batch, int threads,
                            const std::map<int, double>& peak_gflops) {
  set_num_threads(threads);
  const MemoryProbe memory;
  const std::string name = model + " batch " + std::to_string(batch);
  const double peak = peak_of(peak_gflops, threads);
  // A model with every weight nonzero (the zero-initialized convs too): the cost does not
  // depend on the values, but the outputs should be a trained model's kind of numbers.
  UNet unet(unet_config(model), 1);
  Generator gen(2);
  for (Parameter* p : unet.parameters())
    for (int64_t i = 0; i < p->var->value.numel(); i++) p->var->value[i] += 0.02f * gen.normal();
  const UNetConfig& c = unet.config();
  const Shape shape{batch, c.in_ch, c.image_size, c.image_size};
  // Algorithm 2 with the paper's Sigma, as ./sample runs it: sample() over a schedule of
  // sample_steps steps costs sample_steps of the 1000-step run's steps (the network and the
  // update do not depend on t's value).
  const Schedule sched = make_schedule("linear", opt.sample_steps);
  const ModelFn model_fn = unet_model(unet, sched);
  sample(make_schedule("linear", 1), model_fn, shape, 0);  // warm-up: the workspaces
  std::vector<double> times;
  for (int r = 0; r < opt.reps; r++) {
    const double t0 = now_s();
    sample(sched, model_fn, shape, static_cast<uint64_t>(r));
    times.push_back(now_s() - t0);
  }
  const double run_s = median(times), step_s = run_s / opt.sample_steps;
  std::vector<Row> rows;
  Row r{"sample", name + " algorithm2", threads, step_s, {}};
  r.values["img_steps_per_s"] = batch / step_s;
  r.values["steps"] = opt.sample_steps;
  // The job: sample_images images in batches of `batch`, 1000 steps each.
  const double batches = std::ceil(static_cast<double>(opt.sample_images) / batch);
  r.values["job_images"] = opt.sample_images;
  r.values["job_s"] = batches * 1000.0 * step_s;
  r.values["job_measured"] = opt.sample_steps == 1000 && batches == 1.0 ? 1.0 : 0.0;

  // The inference pass alone, profiled (time summed over the threads that ran it).
  UNetInference inference(unet);
  Tensor x({batch, c.in_ch, c.image_size, c.image_size});
  fill_normal(x.data(), x.numel(), RngKey{4, 0});
  std::vector<int64_t> t(batch);
  for (int i = 0; i < batch; i++) t[i] = 1 + (i * 37) % 1000;
  inference.forward(x, t);
  times.clear();
  profile_reset();
  profile_enable(true);
  for (int i = 0; i < opt.reps; i++) {
    const double t0 = now_s();
    inference.forward(x, t);
    times.push_back(now_s() - t0);
  }
  profile_enable(false);
  double flops = 0.0, counted_s = 0.0;
  std::map<ProfileKey, ProfileTotal> totals = profile_totals();
  for (const auto& kv : totals) {
    flops += kv.second.flops;
    counted_s += kv.second.seconds;
  }
  Row inf{"sample", name + " inference", threads, median(times), {}};
  inf.values["img_per_s"] = batch / inf.median_s;
  inf.values["gflop_per_image"] = flops / opt.reps / batch / 1e9;
  inf.values["gflops"] = flops / opt.reps / inf.median_s / 1e9;
  inf.values["pct_peak"] = peak > 0 ? 100.0 * inf.values["gflops"] / peak : 0.0;
  r.values["pct_peak"] = peak > 0 ? 100.0 * inf.values["gflop_per_image"] * r.values["img_steps_per_s"] / peak : 0.0;
  rows.push_back(r);
  rows.push_back(inf);
  // Breakdown: each op's share of the thread time (the threads' busy time is about
  // threads x wall time; the rest, waiting and untimed glue, is "other").
  double thread_s = 0.0;
  for (double s : times) thread_s += s * threads;
  std::map<std::string, ProfileTotal> per_op;
  for (const auto& kv : totals) {
    std::string op = profile_op_name(kv.first.first);
    if (kv.first.first == ProfileOp::conv_forward)
      op += " " + std::to_string(kv.first.second) + "x" + std::to_string(kv.first.second);
    per_op[op].seconds += kv.second.seconds;
    per_op[op].flops += kv.second.flops;
  }
  per_op["other"].seconds = std::max(0.0, thread_s - counted_s);
  for (const auto& kv : per_op) {
    Row o{"sample-ops", name + " " + kv.first, threads, kv.second.seconds / opt.reps, {}};
    o.values["share_pct"] = 100.0 * kv.second.seconds / thread_s;
    if (kv.second.flops > 0) {
      o.values["gflops"] = kv.second.flops / kv.second.seconds / 1e9;  // per thread
      o.values["pct_peak"] = peak > 0 ? 100.0 * o.values["gflops"] * threads / peak : 0.0;
    }
    rows.push_back(o);
  }

  // Sampling's peak memory, before the tape forward below grows it.
  const Row memory_row = memory.row("sample", name, threads);

  // The tape's no-grad forward at the same batch: what sampling ran before UNetInference.
  if (opt.sample_tape) {
    auto tape_forward = [&] {
      Tape tape = Tape::no_grad();
      unet.forward(tape, constant(x), t, ForwardContext{});
    };
    tape_forward();
    times.clear();
    for (int i = 0; i < std::max(1, opt.reps / 2); i++) {
      const double t0 = now_s();
      tape_forward();
      times.push_back(now_s() - t0);
    }
    Row tf{"sample", name + " tape forward", threads, median(times), {}};
    tf.values["img_per_s"] = batch / tf.median_s;
    rows.push_back(tf);
  }

  rows.push_back(memory_row);
  set_num_threads(1);
  return rows;
}

void section_sample(const Options& opt, Report& report) {
  set_num_threads(1);
  for (const std::string& model : opt.models)
    for (int batch : opt.sample_batches)
      for (int threads : opt.threads) {
        const auto rows = run_forked("sample " + model + " batch " + std::to_string(batch), [&] {
          return run_sample(opt, model, batch, threads, report.peak_gflops);
        });
        for (const Row& r : rows) {
          report.add(r);
          print_model_row(r, opt);
        }
        std::fflush(stdout);
      }
}

// ---------------------------------------------------------------------------
// Sections and output.

struct Section {
  const char* name;
  void (*run)(const Options&, Report&);
};
// peak first: the other sections divide by it.
const Section kSections[] = {
    {"peak", section_peak},
    {"bandwidth", section_bandwidth},
    {"sgemm", section_sgemm},
    {"conv", section_conv},
    {"model", section_model},
    {"sample", section_sample},
};

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

void write_json(const std::string& path, const Report& report) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  DDPM_CHECK(f, "bench: cannot open '" << path << "' for writing");
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::fprintf(f, "{\n  \"simd\": \"%s\",\n  \"peak_rss_mb\": %.1f,\n  \"rows\": [\n", simd::kTarget,
               ru.ru_maxrss / 1024.0);
  for (size_t i = 0; i < report.rows.size(); i++) {
    const Row& r = report.rows[i];
    std::fprintf(f, "    {\"section\": \"%s\", \"name\": \"%s\", \"threads\": %d, \"median_s\": %.9g",
                 json_escape(r.section).c_str(), json_escape(r.name).c_str(), r.threads, r.median_s);
    for (const auto& kv : r.values) std::fprintf(f, ", \"%s\": %.6g", kv.first.c_str(), kv.second);
    std::fprintf(f, "}%s\n", i + 1 < report.rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

// "1,2" -> {1, 2}: whole positive numbers (each thread count is then checked as every
// tool's --threads is, check_threads_flag).
std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& s) {
  std::vector<int64_t> out;
  for (const std::string& item : split_commas(s)) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    DDPM_CHECK(!item.empty() && *end == '\0' && errno == 0 && v >= 1 && v <= (int64_t(1) << 30),
               "bench: " << flag << " wants a list of positive numbers like 1,2, not '" << s << "'");
    out.push_back(v);
  }
  DDPM_CHECK(!out.empty(), "bench: " << flag << " is empty; give a list like 1,2");
  return out;
}

int run(int argc, char** argv) {
  Options opt;
  std::string threads = "1,2", models = "tiny", batches = "64", sample_batches = "256";
  int64_t reps = opt.reps, steps = opt.steps, sample_steps = opt.sample_steps, sample_images = opt.sample_images;
  Flags flags("bench",
              "How fast this machine runs ddpm's kernels, against its own measured FMA peak. Sections: peak,\n"
              "bandwidth, sgemm, conv, model, sample (see the comment at the top of tools/bench.cpp). peak and sgemm:\n"
              "medians of --reps runs; model: medians of --steps training steps and forward passes per model, batch\n"
              "and thread count; sample: medians of --reps Algorithm 2 runs of --sample-steps steps.");
  flags.add("--json", &opt.json_path, "also write every row to this JSON file, for later comparison");
  flags.add("--threads", &threads, "thread counts, like 1,2");
  flags.add("--reps", &reps, "timed runs per figure (after one warm-up run)");
  flags.add("--only", &opt.only, "run one section: peak, bandwidth, sgemm, conv, model or sample (peak always runs)");
  flags.add("--models", &models, "model and sample sections: U-Net configs, like tiny,small (or cifar10: 32x32x3)");
  flags.add("--batches", &batches, "model section: batch sizes, like 64,128");
  flags.add("--steps", &steps, "model section: timed training steps and forward passes per configuration");
  flags.add("--sample-batches", &sample_batches, "sample section: sampling batch sizes, like 64,256");
  flags.add("--sample-steps", &sample_steps,
            "sample section: Algorithm 2 steps per timed run (the 1000-step job time is scaled from them; 1000 "
            "measures it)");
  flags.add("--sample-images", &sample_images, "sample section: images of the job whose 1000-step wall time is reported");
  flags.add("--sample-tape", &opt.sample_tape,
            "sample section: also time the tape's no-grad forward at the same batch (false: the process holds only "
            "what sampling needs, for /usr/bin/time -v)");
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  DDPM_CHECK(reps >= 1 && steps >= 1 && sample_steps >= 1 && sample_images >= 1,
             "bench: --reps, --steps, --sample-steps and --sample-images must be at least 1");
  bool known = opt.only.empty();
  for (const Section& s : kSections) known = known || opt.only == s.name;
  DDPM_CHECK(known, "bench: --only '" << opt.only << "': use peak, bandwidth, sgemm, conv, model or sample");
  opt.reps = static_cast<int>(reps);
  opt.steps = static_cast<int>(steps);
  opt.threads.clear();
  for (int64_t t : parse_int_list("--threads", threads)) opt.threads.push_back(check_threads_flag(t));
  opt.batches.clear();
  for (int64_t b : parse_int_list("--batches", batches)) opt.batches.push_back(static_cast<int>(b));
  opt.sample_batches.clear();
  for (int64_t b : parse_int_list("--sample-batches", sample_batches)) opt.sample_batches.push_back(static_cast<int>(b));
  opt.sample_steps = static_cast<int>(sample_steps);
  opt.sample_images = static_cast<int>(sample_images);
  opt.models = split_commas(models);
  std::printf("bench: SIMD target %s, threads", simd::kTarget);
  for (int t : opt.threads) std::printf(" %d", t);
  std::printf(", median of %d runs\n", opt.reps);
  Report report;
  for (const Section& s : kSections) {
    // sgemm's % of peak needs the peak, so --only sgemm still measures it.
    if (!opt.only.empty() && opt.only != s.name && std::string(s.name) != "peak") continue;
    s.run(opt, report);
  }
  if (!opt.json_path.empty()) {
    write_json(opt.json_path, report);
    std::printf("bench: wrote %s\n", opt.json_path.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool(run, argc, argv); }

// bench: how fast this machine runs ddpm's kernels, against its own measured FMA peak.
//
//   ./bench [--json FILE] [--threads 1,2] [--reps N] [--only SECTION]
//
// Sections (each a function below, registered in kSections; add new ones there):
//   peak   the FMA peak per thread count: every thread runs independent FMA chains
//          (enough accumulators to cover the FMA latency) on registers only.
//   sgemm  GFLOP/s and % of peak for the U-Net's GEMM shapes: each conv level's
//          forward (M = OC, N = OH*OW, K = C*9), backward-data (op(A) transposed:
//          M = C*9, N = P, K = OC) and backward-weight (op(B) transposed: M = OC,
//          N = C*9, K = batch*P), plus a linear layer and 1024^3.
// Later sections (whole-model training and forward img/s, a per-op breakdown) plug
// into the same Report: one row per measurement, printed and written as JSON.
//
// Every figure is the median of --reps timed runs after one warm-up run; the machine
// is shared, so medians, not means.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ddpm/check.h"
#include "ddpm/kernels.h"
#include "ddpm/parallel.h"
#include "ddpm/rng.h"
#include "ddpm/simd.h"

using namespace ddpm;

namespace {

struct Options {
  std::string json_path;
  std::vector<int> threads = {1, 2};
  int reps = 7;
  std::string only;  // run one section
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
// Sections and output.

struct Section {
  const char* name;
  void (*run)(const Options&, Report&);
};
// peak first: the other sections divide by it.
const Section kSections[] = {
    {"peak", section_peak},
    {"sgemm", section_sgemm},
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

std::vector<int> parse_int_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int v = std::atoi(item.c_str());
    DDPM_CHECK(v >= 1, "bench: --threads wants a list like 1,2, not '" << s << "'");
    out.push_back(v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options opt;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        DDPM_CHECK(i + 1 < argc, "bench: " << a << " needs a value");
        return argv[++i];
      };
      if (a == "--json") {
        opt.json_path = value();
      } else if (a == "--threads") {
        opt.threads = parse_int_list(value());
      } else if (a == "--reps") {
        opt.reps = std::max(1, std::atoi(value().c_str()));
      } else if (a == "--only") {
        opt.only = value();
      } else if (a == "--help" || a == "-h") {
        std::printf(
            "usage: bench [--json FILE] [--threads 1,2] [--reps 7] [--only peak|sgemm]\n"
            "  medians of --reps runs; --json writes every row for later comparison\n");
        return 0;
      } else {
        DDPM_CHECK(false, "bench: unknown argument '" << a << "' (try --help)");
      }
    }
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

#include "ddpm/app/progress.h"

#include <cmath>
#include <cstdio>

namespace ddpm {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

std::function<void(int64_t first, int64_t count, int64_t t)> sampling_progress(int64_t total, int64_t T, int64_t every,
                                                                               Clock::time_point t0) {
  return [total, T, every, t0](int64_t first, int64_t count, int64_t t) {
    const int64_t done = T - t + 1;  // reverse steps done in this batch
    if (done % every != 0 && t != 1) return;
    const double elapsed = seconds_since(t0);
    const double work = static_cast<double>(first * T + count * done), all = static_cast<double>(total * T);
    std::printf("  images %lld-%lld of %lld: t=%lld/%lld  %.1fs  eta %.0fs\n", static_cast<long long>(first + 1),
                static_cast<long long>(first + count), static_cast<long long>(total), static_cast<long long>(t - 1),
                static_cast<long long>(T), elapsed, elapsed * (all - work) / work);
    std::fflush(stdout);
  };
}

std::function<void(int64_t done, int64_t total)> count_progress(const char* what) {
  const Clock::time_point t0 = Clock::now();
  return [what, t0](int64_t done, int64_t total) {
    std::fprintf(stderr, "  %s %lld/%lld (%.1f s)\n", what, static_cast<long long>(done), static_cast<long long>(total),
                 seconds_since(t0));
  };
}

}  // namespace ddpm

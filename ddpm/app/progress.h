// progress.h: the clock the tools time their work with, and the progress lines they print.
//
//   seconds_since(t0)      seconds of wall time since t0 (steady_clock)
//   format_duration(s)     "12m05s", "1h02m" ("?" for a negative or non-finite time)
//   sampling_progress      ./sample's line per batch of Algorithm 2, on stdout
//   count_progress         ./eval's "  <what> <done>/<total> (<seconds> s)", on stderr
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace ddpm {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0);
std::string format_duration(double seconds);

// For BatchedSampleOptions::progress of `total` images under Algorithm 2's T steps: every
// `every` reverse steps of a batch, and at its last one (t = 1), the line
//   "  images 1-64 of 100: t=899/1000  12.3s  eta 30s"
// with the time since t0 and the rest estimated from the reverse steps done in all batches.
std::function<void(int64_t first, int64_t count, int64_t t)> sampling_progress(int64_t total, int64_t T, int64_t every,
                                                                               Clock::time_point t0);

// A counter's progress (EvalProgress, ddpm/eval/evaluate.h), timed from this call:
// "  <what> <done>/<total> (<seconds> s)" on stderr. `what` must outlive it.
std::function<void(int64_t done, int64_t total)> count_progress(const char* what);

}  // namespace ddpm

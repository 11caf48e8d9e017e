// schedule_run.h: ./schedule as a library call. A ScheduleRun is the tool's flags in one
// struct; schedule_run() prints the schedule and its derived quantities as CSV on stdout
// (schedule_csv) and, with --svg-dir, draws the two plots of the slides "Different Variance
// Schedulers" (write_schedule_plots): beta_t and alpha_bar_t of the four schedules.
//
// tools/schedule.cpp is its main: flags, schedule_run. The tests drive these directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/app/flags.h"
#include "ddpm/diffusion/schedule.h"

namespace ddpm {

struct ScheduleRun {
  std::string schedule = "linear";
  int64_t T = 1000;
  ScheduleOptions options;  // --beta-start, --beta-end
  std::string svg_dir;      // empty: no plots
  bool csv = true;
};

// ./schedule's flags, each bound to its field of `run`. Construct, then parse(argc, argv);
// false means --help was asked (help() has the text).
class ScheduleRunFlags : public Flags {
 public:
  explicit ScheduleRunFlags(ScheduleRun* run);
};

// The header line "t,beta,alpha,...", then one row per t = 0..T, each value as %.10g.
std::string schedule_csv(const Schedule& s);

// dir/schedule_beta.svg (log scale) and dir/schedule_alpha_bar.svg: each schedule of
// schedule_names() at this T, t = 1..T. Creates dir (and its parents) if absent.
void write_schedule_plots(const std::string& dir, int64_t T, const ScheduleOptions& options);

// Checks --T before anything is allocated, prints the CSV unless !csv, writes the plots when
// svg_dir is set. Returns the exit code (0); failures throw ddpm::Error.
int schedule_run(const ScheduleRun& run);

}  // namespace ddpm

// schedule: print a variance schedule and its derived quantities as CSV, and optionally
// write the two schedule plots (beta_t and alpha_bar_t for the four schedules) as SVG. The
// run itself is ddpm/app/schedule_run.h's schedule_run.
//
//   ./schedule --schedule cosine --T 1000 > cosine.csv
//   ./schedule --svg-dir out/            # writes out/schedule_beta.svg and out/schedule_alpha_bar.svg
#include <cstdio>

#include "ddpm/app/flags.h"
#include "ddpm/app/schedule_run.h"

using namespace ddpm;

namespace {

int run(int argc, char** argv) {
  ScheduleRun options;
  ScheduleRunFlags flags(&options);
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  return schedule_run(options);
}

}  // namespace

int main(int argc, char** argv) { return run_tool(run, argc, argv); }

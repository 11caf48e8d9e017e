// schedule: print a variance schedule and its derived quantities as CSV, and optionally
// write the two schedule plots (beta_t and alpha_bar_t for the four schedules) as SVG. The
// run itself is ddpm/app/schedule_run.h's schedule_run.
//
//   ./schedule --schedule cosine --T 1000 > cosine.csv
//   ./schedule --svg-dir out/            # writes out/schedule_beta.svg and out/schedule_alpha_bar.svg
#include "ddpm/app/flags.h"
#include "ddpm/app/schedule_run.h"

int main(int argc, char** argv) {
  using namespace ddpm;
  return run_tool(parse_and_run<ScheduleRun, ScheduleRunFlags, schedule_run>, argc, argv);
}

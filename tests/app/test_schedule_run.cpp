// Tests of ./schedule as a library call (ddpm/app/schedule_run.h): the CSV holds each
// quantity of the Schedule at t = 0..T, and --svg-dir writes the two plots, one line per
// schedule.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/app/schedule_run.h"
#include "ddpm/core/check.h"
#include "ddpm/diffusion/schedule.h"
#include "tests/app/app_testing.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using testing::CapturedOutput;
using testing::TempDir;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

ScheduleRun parse(const std::vector<std::string>& args) {
  ScheduleRun run;
  ScheduleRunFlags flags(&run);
  REQUIRE(flags.parse(args));
  return run;
}

}  // namespace

TEST_CASE("schedule_run: the CSV has a header and one row per t = 0..T of the schedule's quantities") {
  const Schedule s = make_schedule("cosine", 7);
  const std::vector<std::string> lines = lines_of(schedule_csv(s));
  REQUIRE(lines.size() == 9);  // header, t = 0..7
  CHECK(lines[0].rfind("t,beta,alpha,alpha_bar,alpha_bar_prev,", 0) == 0);
  CHECK(lines[1].rfind("0,0,1,1,1,1,0,", 0) == 0);  // beta_0 = 0, alpha_bar_0 = 1
  for (int64_t t = 1; t <= 7; t++) {
    double row_t, beta, alpha, alpha_bar;
    REQUIRE(std::sscanf(lines[t + 1].c_str(), "%lf,%lf,%lf,%lf", &row_t, &beta, &alpha, &alpha_bar) == 4);
    CHECK(row_t == t);
    // %.10g keeps 10 significant digits.
    CHECK(beta == doctest::Approx(s.beta[t]).epsilon(1e-9));
    CHECK(alpha == doctest::Approx(s.alpha[t]).epsilon(1e-9));
    CHECK(alpha_bar == doctest::Approx(s.alpha_bar[t]).epsilon(1e-9));
  }

  // What ./schedule --schedule cosine --T 7 prints is that CSV; --T is checked first.
  CapturedOutput out;
  CHECK(schedule_run(parse({"--schedule", "cosine", "--T", "7"})) == 0);
  CHECK(out.text() == schedule_csv(s));
  CHECK_THROWS_WITH_AS(schedule_run(parse({"--T", "0"})), doctest::Contains("--T 0 not in [1, 100000]"), Error);
}

TEST_CASE("schedule_run: --svg-dir writes beta_t and alpha_bar_t of the four schedules, and --no-csv prints nothing") {
  TempDir dir;
  const std::string svg_dir = dir / "plots/at/T20";  // created, parents too
  CapturedOutput out, note(2);
  CHECK(schedule_run(parse({"--T", "20", "--svg-dir", svg_dir, "--no-csv"})) == 0);
  CHECK(out.text().empty());
  CHECK(note.text() == "schedule: wrote " + svg_dir + "/schedule_beta.svg and " + svg_dir + "/schedule_alpha_bar.svg\n");
  CHECK(testing::list_files(svg_dir) == std::vector<std::string>{"schedule_alpha_bar.svg", "schedule_beta.svg"});
  for (const std::string quantity : {"beta", "alpha_bar"}) {
    const std::vector<uint8_t> bytes = testing::read_bytes(svg_dir + "/schedule_" + quantity + ".svg");
    const std::string svg(bytes.begin(), bytes.end());
    CHECK(svg.find(">" + quantity + "_t, T = 20<") != std::string::npos);  // the title
    size_t polylines = 0;
    for (size_t at = 0; (at = svg.find("<polyline", at)) != std::string::npos; at++) polylines++;
    CHECK(polylines == schedule_names().size());
    for (const std::string& name : schedule_names()) CHECK(svg.find(">" + name + "<") != std::string::npos);
  }

  // A path under a file cannot be a folder.
  testing::write_bytes(dir / "file", {1});
  CHECK_THROWS_WITH_AS(write_schedule_plots(dir / "file/sub", 20, {}), doctest::Contains("cannot create directory"), Error);
}

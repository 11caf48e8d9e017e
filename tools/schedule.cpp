// schedule: print a variance schedule and its derived quantities as CSV, and optionally
// write the two schedule plots (beta_t and alpha_bar_t for the four schedules) as SVG.
//
//   ./schedule --schedule cosine --T 1000 > cosine.csv
//   ./schedule --svg-dir out/            # writes out/schedule_beta.svg and out/schedule_alpha_bar.svg
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/app/flags.h"
#include "ddpm/io/svg.h"
#include "ddpm/diffusion/schedule.h"

using namespace ddpm;

namespace {

int run(int argc, char** argv) {
  std::string name = "linear", svg_dir;
  int64_t T = 1000;
  bool csv = true;
  ScheduleOptions options;
  Flags flags("schedule",
              "Prints the schedule as CSV on stdout, one row per t = 0..T (t = 0 holds beta = 0,\n"
              "alpha_bar = 1), with columns t, beta, alpha, alpha_bar, alpha_bar_prev, sqrt_alpha_bar,\n"
              "sqrt_one_minus_alpha_bar, sqrt_recip_alpha, eps_coef, posterior_variance,\n"
              "posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2.");
  flags.add("--schedule", &name, "linear, cosine, sigmoid or quadratic");
  flags.add("--T", &T, "number of diffusion steps, 1.." + std::to_string(kMaxT));
  flags.add("--beta-start", &options.beta_start, "beta_1 of linear, quadratic and sigmoid");
  flags.add("--beta-end", &options.beta_end, "beta_T of linear and quadratic, top of sigmoid");
  flags.add("--svg-dir", &svg_dir,
            "also write DIR/schedule_beta.svg and DIR/schedule_alpha_bar.svg: beta_t and alpha_bar_t of all four "
            "schedules at this T");
  flags.add("--csv", &csv, "print the CSV (--no-csv: only the SVGs)");
  if (!flags.parse(argc, argv)) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  check_T(T, "--T");  // before the schedule's arrays are allocated
  const Schedule s = make_schedule(name, T, options);
  if (csv) {
    std::printf("t,beta,alpha,alpha_bar,alpha_bar_prev,sqrt_alpha_bar,sqrt_one_minus_alpha_bar,sqrt_recip_alpha,"
                "eps_coef,posterior_variance,posterior_log_variance_clipped,posterior_mean_coef1,posterior_mean_coef2\n");
    for (int64_t t = 0; t <= s.T; t++)
      std::printf("%lld,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g\n",
                  static_cast<long long>(t), s.beta[t], s.alpha[t], s.alpha_bar[t], s.alpha_bar_prev[t],
                  s.sqrt_alpha_bar[t], s.sqrt_one_minus_alpha_bar[t], s.sqrt_recip_alpha[t], s.eps_coef[t],
                  s.posterior_variance[t], s.posterior_log_variance_clipped[t], s.posterior_mean_coef1[t],
                  s.posterior_mean_coef2[t]);
  }
  if (!svg_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(svg_dir, ec);
    DDPM_CHECK(!ec, "schedule: cannot create directory '" << svg_dir << "': " << ec.message());
    std::vector<PlotSeries> betas, alpha_bars;
    for (const std::string& n : schedule_names()) {
      const Schedule sn = make_schedule(n, T, options);
      PlotSeries b{n, {}, {}, ""}, a{n, {}, {}, ""};
      for (int64_t t = 1; t <= T; t++) {
        b.x.push_back(static_cast<double>(t));
        b.y.push_back(sn.beta[t]);
        a.x.push_back(static_cast<double>(t));
        a.y.push_back(sn.alpha_bar[t]);
      }
      betas.push_back(b);
      alpha_bars.push_back(a);
    }
    PlotOptions pb;
    pb.title = "beta_t, T = " + std::to_string(T);
    pb.x_label = "t";
    pb.y_label = "beta_t";
    pb.log_y = true;  // cosine's last beta is 0.999, the others end at 0.02
    write_line_plot(svg_dir + "/schedule_beta.svg", betas, pb);
    PlotOptions pa;
    pa.title = "alpha_bar_t, T = " + std::to_string(T);
    pa.x_label = "t";
    pa.y_label = "alpha_bar_t";
    write_line_plot(svg_dir + "/schedule_alpha_bar.svg", alpha_bars, pa);
    std::fprintf(stderr, "schedule: wrote %s/schedule_beta.svg and %s/schedule_alpha_bar.svg\n", svg_dir.c_str(),
                 svg_dir.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool(run, argc, argv); }

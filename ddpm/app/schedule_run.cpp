#include "ddpm/app/schedule_run.h"

#include <cstdio>
#include <filesystem>

#include "ddpm/core/check.h"
#include "ddpm/io/svg.h"

namespace ddpm {

ScheduleRunFlags::ScheduleRunFlags(ScheduleRun* run)
    : Flags("schedule",
            "Prints the schedule as CSV on stdout, one row per t = 0..T (t = 0 holds beta = 0,\n"
            "alpha_bar = 1), with columns t, beta, alpha, alpha_bar, alpha_bar_prev, sqrt_alpha_bar,\n"
            "sqrt_one_minus_alpha_bar, sqrt_recip_alpha, eps_coef, posterior_variance,\n"
            "posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2.") {
  ScheduleRun& r = *run;
  add("--schedule", &r.schedule, "linear, cosine, sigmoid or quadratic");
  add("--T", &r.T, "number of diffusion steps, 1.." + std::to_string(kMaxT));
  add("--beta-start", &r.options.beta_start, "beta_1 of linear, quadratic and sigmoid");
  add("--beta-end", &r.options.beta_end, "beta_T of linear and quadratic, top of sigmoid");
  add("--svg-dir", &r.svg_dir,
      "also write DIR/schedule_beta.svg and DIR/schedule_alpha_bar.svg: beta_t and alpha_bar_t of all four "
      "schedules at this T");
  add("--csv", &r.csv, "print the CSV (--no-csv: only the SVGs)");
}

std::string schedule_csv(const Schedule& s) {
  std::string csv =
      "t,beta,alpha,alpha_bar,alpha_bar_prev,sqrt_alpha_bar,sqrt_one_minus_alpha_bar,sqrt_recip_alpha,"
      "eps_coef,posterior_variance,posterior_log_variance_clipped,posterior_mean_coef1,posterior_mean_coef2\n";
  char row[512];
  for (int64_t t = 0; t <= s.T; t++) {
    std::snprintf(row, sizeof row, "%lld,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g\n",
                  static_cast<long long>(t), s.beta[t], s.alpha[t], s.alpha_bar[t], s.alpha_bar_prev[t],
                  s.sqrt_alpha_bar[t], s.sqrt_one_minus_alpha_bar[t], s.sqrt_recip_alpha[t], s.eps_coef[t],
                  s.posterior_variance[t], s.posterior_log_variance_clipped[t], s.posterior_mean_coef1[t],
                  s.posterior_mean_coef2[t]);
    csv += row;
  }
  return csv;
}

void write_schedule_plots(const std::string& dir, int64_t T, const ScheduleOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  DDPM_CHECK(!ec, "schedule: cannot create directory '" << dir << "': " << ec.message());
  std::vector<PlotSeries> betas, alpha_bars;
  for (const std::string& name : schedule_names()) {
    const Schedule s = make_schedule(name, T, options);
    PlotSeries b{name, {}, {}, ""}, a{name, {}, {}, ""};
    for (int64_t t = 1; t <= T; t++) {
      b.x.push_back(static_cast<double>(t));
      b.y.push_back(s.beta[t]);
      a.x.push_back(static_cast<double>(t));
      a.y.push_back(s.alpha_bar[t]);
    }
    betas.push_back(b);
    alpha_bars.push_back(a);
  }
  PlotOptions pb;
  pb.title = "beta_t, T = " + std::to_string(T);
  pb.x_label = "t";
  pb.y_label = "beta_t";
  pb.log_y = true;  // cosine's last beta is 0.999, the others end at 0.02
  write_line_plot(dir + "/schedule_beta.svg", betas, pb);
  PlotOptions pa;
  pa.title = "alpha_bar_t, T = " + std::to_string(T);
  pa.x_label = "t";
  pa.y_label = "alpha_bar_t";
  write_line_plot(dir + "/schedule_alpha_bar.svg", alpha_bars, pa);
}

int schedule_run(const ScheduleRun& r) {
  check_T(r.T, "--T");  // before the schedule's arrays are allocated
  const Schedule s = make_schedule(r.schedule, r.T, r.options);
  if (r.csv) std::printf("%s", schedule_csv(s).c_str());
  if (!r.svg_dir.empty()) {
    write_schedule_plots(r.svg_dir, r.T, r.options);
    std::fprintf(stderr, "schedule: wrote %s/schedule_beta.svg and %s/schedule_alpha_bar.svg\n", r.svg_dir.c_str(),
                 r.svg_dir.c_str());
  }
  return 0;
}

}  // namespace ddpm

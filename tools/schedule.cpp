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

#include "ddpm/check.h"
#include "ddpm/io/svg.h"
#include "ddpm/schedule.h"

using namespace ddpm;

static void usage(FILE* out) {
  std::fprintf(out,
               "usage: ./schedule [--schedule NAME] [--T N] [--beta-start B] [--beta-end B] [--svg-dir DIR] [--no-csv]\n"
               "\n"
               "Prints the schedule as CSV on stdout, one row per t = 0..T (t = 0 holds beta = 0,\n"
               "alpha_bar = 1), with columns t, beta, alpha, alpha_bar, alpha_bar_prev, sqrt_alpha_bar,\n"
               "sqrt_one_minus_alpha_bar, sqrt_recip_alpha, eps_coef, posterior_variance,\n"
               "posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2.\n"
               "\n"
               "  --schedule NAME    linear, cosine, sigmoid or quadratic (default linear)\n"
               "  --T N              number of diffusion steps, N >= 1 (default 1000)\n"
               "  --beta-start B     beta_1 of linear, quadratic and sigmoid (default 1e-4)\n"
               "  --beta-end B       beta_T of linear and quadratic, top of sigmoid (default 0.02)\n"
               "  --svg-dir DIR      also write DIR/schedule_beta.svg and DIR/schedule_alpha_bar.svg:\n"
               "                     beta_t and alpha_bar_t of all four schedules at this T\n"
               "  --no-csv           do not print the CSV\n"
               "  --help             this text\n");
}

static double parse_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  DDPM_CHECK(!v.empty() && *end == '\0', "schedule: " << flag << " expects a number, got '" << v << "'");
  return d;
}

static int64_t parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  DDPM_CHECK(!v.empty() && *end == '\0', "schedule: " << flag << " expects an integer, got '" << v << "'");
  return n;
}

int main(int argc, char** argv) {
  try {
    std::string name = "linear", svg_dir;
    int64_t T = 1000;
    bool csv = true;
    ScheduleOptions options;
    for (int i = 1; i < argc; i++) {
      const std::string flag = argv[i];
      auto value = [&]() -> std::string {
        DDPM_CHECK(i + 1 < argc, "schedule: " << flag << " needs a value (see --help)");
        return argv[++i];
      };
      if (flag == "--help" || flag == "-h") {
        usage(stdout);
        return 0;
      } else if (flag == "--schedule") {
        name = value();
      } else if (flag == "--T") {
        T = parse_int(flag, value());
      } else if (flag == "--beta-start") {
        options.beta_start = parse_double(flag, value());
      } else if (flag == "--beta-end") {
        options.beta_end = parse_double(flag, value());
      } else if (flag == "--svg-dir") {
        svg_dir = value();
      } else if (flag == "--no-csv") {
        csv = false;
      } else {
        DDPM_FAIL("schedule: unknown flag '" << flag << "' (see --help)");
      }
    }
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
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

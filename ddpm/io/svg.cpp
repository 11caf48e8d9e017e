#include "ddpm/io/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "ddpm/core/check.h"
#include "ddpm/io/file.h"

namespace ddpm {

double PlotFrame::px(double x) const {
  const double span = x_max > x_min ? x_max - x_min : 1.0;
  return left + (x - x_min) / span * (right - left);
}

double PlotFrame::py(double y) const {
  const double v = log_y ? std::log10(y) : y;
  const double span = y_max > y_min ? y_max - y_min : 1.0;
  return bottom - (v - y_min) / span * (bottom - top);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  DDPM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && target >= 2,
             "nice_ticks: bad range [" << lo << ", " << hi << "] or target " << target);
  if (hi == lo) {  // a flat series: one unit (or 10%) either side
    const double pad = lo == 0.0 ? 1.0 : 0.1 * std::fabs(lo);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / (target - 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10.0 * mag;
  for (double m : {1.0, 2.0, 5.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
  for (double v = first; v <= last + step * 1e-6; v += step) ticks.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return ticks;
}

static std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

static std::string fmt(double v) {  // a tick label: shortest of %g at 4 significant digits
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

std::string series_color(const std::vector<PlotSeries>& series, size_t k) {
  return series[k].color.empty() ? kPalette[k % 8] : series[k].color;
}

// The data's range (y as log10 on a log axis), every point checked finite (and > 0 on a log axis).
void data_range(const std::vector<PlotSeries>& series, bool log_y, double& x_lo, double& x_hi, double& y_lo,
                double& y_hi) {
  x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const auto& s : series) {
    DDPM_CHECK(!s.x.empty() && s.x.size() == s.y.size(), "line_plot_svg: series '" << s.label << "' has "
                                                             << s.x.size() << " x and " << s.y.size()
                                                             << " y values; they must match and be non-empty");
    for (size_t k = 0; k < s.x.size(); k++) {
      DDPM_CHECK(std::isfinite(s.x[k]) && std::isfinite(s.y[k]),
                 "line_plot_svg: series '" << s.label << "' point " << k << " is not finite");
      DDPM_CHECK(!log_y || s.y[k] > 0.0, "line_plot_svg: series '" << s.label << "' point " << k << " has y = "
                                                                   << s.y[k] << " <= 0 on a log axis");
      const double y = log_y ? std::log10(s.y[k]) : s.y[k];
      x_lo = std::min(x_lo, s.x[k]);
      x_hi = std::max(x_hi, s.x[k]);
      y_lo = std::min(y_lo, y);
      y_hi = std::max(y_hi, y);
    }
  }
}

// Grid lines and tick labels, the frame and the axis labels.
void draw_axes(std::ostringstream& svg, const PlotFrame& f, const PlotOptions& o, const std::vector<double>& x_ticks,
               const std::vector<double>& y_ticks) {
  for (double v : x_ticks) {
    const double x = f.px(v);
    svg << "<line class=\"grid\" x1=\"" << x << "\" y1=\"" << f.top << "\" x2=\"" << x << "\" y2=\"" << f.bottom
        << "\" stroke=\"#e0e0e0\"/>\n";
    svg << "<text class=\"xtick\" x=\"" << x << "\" y=\"" << f.bottom + 16 << "\" text-anchor=\"middle\">" << fmt(v)
        << "</text>\n";
  }
  for (double v : y_ticks) {
    const double y = f.bottom - (v - f.y_min) / (f.y_max - f.y_min) * (f.bottom - f.top);
    svg << "<line class=\"grid\" x1=\"" << f.left << "\" y1=\"" << y << "\" x2=\"" << f.right << "\" y2=\"" << y
        << "\" stroke=\"#e0e0e0\"/>\n";
    svg << "<text class=\"ytick\" x=\"" << f.left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">"
        << (o.log_y ? "1e" + fmt(v) : fmt(v)) << "</text>\n";
  }
  svg << "<rect class=\"frame\" x=\"" << f.left << "\" y=\"" << f.top << "\" width=\"" << f.right - f.left
      << "\" height=\"" << f.bottom - f.top << "\" fill=\"none\" stroke=\"black\"/>\n";
  if (!o.x_label.empty())
    svg << "<text x=\"" << (f.left + f.right) / 2 << "\" y=\"" << o.height - 12 << "\" text-anchor=\"middle\">"
        << xml_escape(o.x_label) << "</text>\n";
  if (!o.y_label.empty())
    svg << "<text transform=\"translate(16 " << (f.top + f.bottom) / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
        << xml_escape(o.y_label) << (o.log_y ? " (log scale)" : "") << "</text>\n";
}

// The series as polylines, then the legend on top of them.
void draw_series(std::ostringstream& svg, const PlotFrame& f, const std::vector<PlotSeries>& series) {
  for (size_t k = 0; k < series.size(); k++) {
    const PlotSeries& s = series[k];
    svg << "<polyline class=\"series\" fill=\"none\" stroke=\"" << xml_escape(series_color(series, k))
        << "\" stroke-width=\"1.5\" points=\"";
    for (size_t p = 0; p < s.x.size(); p++) svg << (p ? " " : "") << f.px(s.x[p]) << "," << f.py(s.y[p]);
    svg << "\"/>\n";
  }
  const double lx = f.right - 150, ly = f.top + 10;
  svg << "<rect class=\"legend\" x=\"" << lx - 8 << "\" y=\"" << ly - 6 << "\" width=\"150\" height=\""
      << 18 * series.size() + 6 << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n";
  for (size_t k = 0; k < series.size(); k++) {
    const double y = ly + 18 * k + 6;
    svg << "<line x1=\"" << lx << "\" y1=\"" << y << "\" x2=\"" << lx + 24 << "\" y2=\"" << y << "\" stroke=\""
        << xml_escape(series_color(series, k)) << "\" stroke-width=\"2\"/>\n";
    svg << "<text class=\"legend-label\" x=\"" << lx + 30 << "\" y=\"" << y + 4 << "\">" << xml_escape(series[k].label)
        << "</text>\n";
  }
}

}  // namespace

std::string line_plot_svg(const std::vector<PlotSeries>& series, const PlotOptions& o, PlotFrame* frame_out) {
  DDPM_CHECK(!series.empty(), "line_plot_svg: no series to plot");
  DDPM_CHECK(o.width >= 200 && o.height >= 150, "line_plot_svg: size " << o.width << "x" << o.height
                                                                       << " is too small (at least 200x150)");
  double x_lo, x_hi, y_lo, y_hi;
  data_range(series, o.log_y, x_lo, x_hi, y_lo, y_hi);
  const std::vector<double> x_ticks = nice_ticks(x_lo, x_hi);
  std::vector<double> y_ticks;
  if (o.log_y) {  // decades
    for (double e = std::floor(y_lo + 1e-9); e <= std::ceil(y_hi - 1e-9) + 1e-9; e += 1.0) y_ticks.push_back(e);
    if (y_ticks.size() < 2) y_ticks.push_back(y_ticks.back() + 1.0);
  } else {
    y_ticks = nice_ticks(y_lo, y_hi);
  }
  PlotFrame f;
  f.left = 70;
  f.top = o.title.empty() ? 20 : 40;
  f.right = o.width - 20;
  f.bottom = o.height - 50;
  f.x_min = x_ticks.front();
  f.x_max = x_ticks.back();
  f.y_min = y_ticks.front();
  f.y_max = y_ticks.back();
  f.log_y = o.log_y;
  if (frame_out) *frame_out = f;

  std::ostringstream svg;
  svg.precision(6);
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\"" << o.height
      << "\" viewBox=\"0 0 " << o.width << " " << o.height << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (!o.title.empty())
    svg << "<text x=\"" << o.width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << xml_escape(o.title)
        << "</text>\n";
  draw_axes(svg, f, o, x_ticks, y_ticks);
  draw_series(svg, f, series);
  svg << "</svg>\n";
  return svg.str();
}

void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& options) {
  const std::string doc = line_plot_svg(series, options);
  // Temp file, fsync, rename: a failed write (disk full) leaves the previous plot or none.
  write_file_atomic(path, doc.data(), doc.size());
}

}  // namespace ddpm

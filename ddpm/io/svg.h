// io/svg.h: a small SVG line-plot writer (schedule plots, training loss curves).
//
// One plot: a frame with x and y axes, "nice" ticks (1, 2 or 5 times a power of ten; decades
// on a log axis), tick labels, axis labels, a title, and a legend with one entry per series.
// Each series is one <polyline>, with points in the order given. No dependencies; the text
// is escaped for XML.
#pragma once

#include <string>
#include <vector>

namespace ddpm {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // same length, at least 1 point
  std::string color;         // any SVG color; empty picks from a fixed palette
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 640, height = 400;  // pixels
  bool log_y = false;             // every y must be > 0
};

// The plot's data rectangle in pixels, and the mapping from data to pixels (for tests and
// for callers that add marks).
struct PlotFrame {
  double left, top, right, bottom;         // pixel edges of the data area
  double x_min, x_max, y_min, y_max;       // data range covered (after rounding to ticks)
  bool log_y;
  double px(double x) const;                // data x -> pixel x
  double py(double y) const;                // data y -> pixel y (log10 when log_y)
};

// Ticks covering [lo, hi]: about `target` values at 1, 2 or 5 times a power of ten.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

// The SVG document. Throws ddpm::Error for no series, an empty series, x/y of different
// lengths, a non-finite value, or y <= 0 with log_y. `frame` (optional) receives the mapping.
std::string line_plot_svg(const std::vector<PlotSeries>& series, const PlotOptions& options,
                          PlotFrame* frame = nullptr);

// Writes line_plot_svg to `path` atomically (write_file_atomic: a failed write leaves the
// previous file or none, never a partial one); throws ddpm::Error naming the path.
void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace ddpm

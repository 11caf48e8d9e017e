// Tests for ddpm/io/svg.h: the plot's structure, its data-to-pixel mapping, ticks and errors.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "ddpm/core/check.h"
#include "ddpm/io/svg.h"
#include "tests/testing.h"

using namespace ddpm;

namespace {

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
  return n;
}

// The (x, y) pixel pairs of the k-th polyline.
std::vector<std::pair<double, double>> polyline_points(const std::string& svg, int k) {
  size_t p = 0;
  for (int i = 0; i <= k; i++) p = svg.find("<polyline", i ? p + 1 : 0);
  const size_t a = svg.find("points=\"", p) + 8, b = svg.find('"', a);
  std::istringstream in(svg.substr(a, b - a));
  std::vector<std::pair<double, double>> pts;
  std::string pair;
  while (in >> pair) {
    const size_t c = pair.find(',');
    pts.emplace_back(std::stod(pair.substr(0, c)), std::stod(pair.substr(c + 1)));
  }
  return pts;
}

}  // namespace

TEST_CASE("svg: nice_ticks are 1, 2 or 5 times a power of ten and cover the range") {
  struct Case { double lo, hi; };
  for (Case c : {Case{0, 1000}, Case{1e-4, 0.02}, Case{-3.7, 12.2}, Case{0.5, 0.5}, Case{0, 1}}) {
    std::vector<double> t = nice_ticks(c.lo, c.hi);
    CAPTURE(c.lo);
    CAPTURE(c.hi);
    REQUIRE(t.size() >= 2);
    CHECK(t.size() <= 12);
    CHECK(t.front() <= c.lo);
    CHECK(t.back() >= c.hi);
    const double step = t[1] - t[0];
    const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-12));
    // The mantissa of the step is 1, 2 or 5 (up to rounding of the power of ten).
    CHECK((std::fabs(mant - 1) < 1e-9 || std::fabs(mant - 2) < 1e-9 || std::fabs(mant - 5) < 1e-9));
    for (size_t k = 1; k < t.size(); k++) CHECK(t[k] - t[k - 1] == doctest::Approx(step));
  }
  std::vector<double> t = nice_ticks(0, 1000);
  CHECK(t == std::vector<double>{0, 200, 400, 600, 800, 1000});
}

TEST_CASE("svg: a line plot has one polyline per series, a legend, and maps data to pixels") {
  PlotSeries a{"linear", {1, 2, 3, 4}, {0.0, 0.5, 1.0, 0.25}, ""};
  PlotSeries b{"a <b> & \"c\"", {1, 4}, {1.0, 0.0}, "#123456"};
  PlotOptions o;
  o.title = "alpha_bar_t";
  o.x_label = "t";
  o.y_label = "alpha_bar";
  PlotFrame f;
  std::string svg = line_plot_svg({a, b}, o, &f);
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(count(svg, "<polyline") == 2);
  CHECK(count(svg, "class=\"legend-label\"") == 2);
  CHECK(svg.find(">linear</text>") != std::string::npos);
  CHECK(svg.find("a &lt;b&gt; &amp; &quot;c&quot;") != std::string::npos);  // escaped
  CHECK(svg.find("a <b>") == std::string::npos);
  CHECK(svg.find("stroke=\"#123456\"") != std::string::npos);
  CHECK(svg.find(">alpha_bar_t</text>") != std::string::npos);
  CHECK(count(svg, "class=\"xtick\"") >= 2);
  CHECK(count(svg, "class=\"ytick\"") >= 2);
  // The data range lies inside the frame's ticks; points land where the mapping says.
  CHECK(f.x_min <= 1);
  CHECK(f.x_max >= 4);
  CHECK(f.y_min <= 0);
  CHECK(f.y_max >= 1);
  auto pts = polyline_points(svg, 0);
  REQUIRE(pts.size() == 4);
  for (size_t k = 0; k < 4; k++) {
    // Printed with 6 significant digits: 0.01 px.
    CHECK(pts[k].first == doctest::Approx(f.px(a.x[k])).epsilon(1e-4));
    CHECK(pts[k].second == doctest::Approx(f.py(a.y[k])).epsilon(1e-4));
    CHECK(pts[k].first >= f.left - 1e-9);
    CHECK(pts[k].first <= f.right + 1e-9);
    CHECK(pts[k].second >= f.top - 1e-9);
    CHECK(pts[k].second <= f.bottom + 1e-9);
  }
  // Larger y is higher on the page (smaller pixel y).
  CHECK(pts[2].second < pts[1].second);
  CHECK(polyline_points(svg, 1).size() == 2);
}

TEST_CASE("svg: a log-y plot puts decades at equal spacing") {
  PlotSeries s{"beta", {1, 2, 3}, {1e-4, 1e-3, 1e-2}, ""};
  PlotOptions o;
  o.log_y = true;
  PlotFrame f;
  std::string svg = line_plot_svg({s}, o, &f);
  auto pts = polyline_points(svg, 0);
  REQUIRE(pts.size() == 3);
  CHECK((pts[0].second - pts[1].second) == doctest::Approx(pts[1].second - pts[2].second).epsilon(1e-4));
  CHECK(svg.find(">1e-4</text>") != std::string::npos);
  CHECK(svg.find("(log scale)") == std::string::npos);  // no y label given
}

TEST_CASE("svg: bad input throws an error naming the problem") {
  PlotOptions o;
  CHECK_THROWS_WITH_AS(line_plot_svg({}, o), doctest::Contains("no series"), Error);
  CHECK_THROWS_WITH_AS(line_plot_svg({PlotSeries{"s", {1, 2}, {1}, ""}}, o), doctest::Contains("2 x and 1 y"), Error);
  CHECK_THROWS_WITH_AS(line_plot_svg({PlotSeries{"s", {1}, {NAN}, ""}}, o), doctest::Contains("not finite"), Error);
  o.log_y = true;
  CHECK_THROWS_WITH_AS(line_plot_svg({PlotSeries{"s", {1, 2}, {1, 0}, ""}}, o), doctest::Contains("<= 0 on a log axis"),
                       Error);
  CHECK_THROWS_WITH_AS(write_line_plot("/nonexistent-dir/x.svg", {PlotSeries{"s", {1}, {1}, ""}}, PlotOptions{}),
                       doctest::Contains("/nonexistent-dir/x.svg"), Error);
}

TEST_CASE("svg: write_line_plot writes the same document to a file") {
  const std::string path = "build/test_svg_plot.svg";
  std::vector<PlotSeries> s = {PlotSeries{"loss", {0, 1, 2}, {3, 2, 1.5}, ""}};
  std::remove(path.c_str());
  // build/ exists whenever the tests were built by make or cmake from the repo root.
  write_line_plot(path, s, PlotOptions{});
  std::ifstream in(path);
  REQUIRE(in);
  std::stringstream buf;
  buf << in.rdbuf();
  CHECK(buf.str() == line_plot_svg(s, PlotOptions{}));
  std::remove(path.c_str());
}

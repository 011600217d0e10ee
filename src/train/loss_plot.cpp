#include "xdistill/train/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "xdistill/train/metrics_log.h"
#include "xdistill/util/error.h"

namespace xd::train {
namespace {

constexpr double kWidth = 800, kHeight = 480;
constexpr double kLeft = 80, kRight = 180, kTop = 40, kBottom = 60;  // margins (legend on the right)
const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Evenly spaced "nice" tick values (1, 2, 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 6) {
  const double span = hi - lo;
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (span / step <= target) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(t);
  return ticks;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) { lo = std::min(lo, v); hi = std::max(hi, v); }
  void pad() {
    if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  }
};
}  // namespace

std::string render_svg_plot(const std::vector<Series>& series, const std::string& title,
                            const std::string& x_label, const std::string& y_label, bool log_y) {
  auto ty = [&](double v) { return log_y ? std::log10(v) : v; };
  auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); };
  Range xr, yr;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (usable(s.x[i], s.y[i])) { xr.add(s.x[i]); yr.add(ty(s.y[i])); }
  XD_CHECK(std::isfinite(xr.lo), "plot '", title, "': no finite points to draw");
  xr.pad();
  yr.pad();
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - xr.lo) / (xr.hi - xr.lo) * pw; };
  auto py = [&](double y) { return kTop + ph - (y - yr.lo) / (yr.hi - yr.lo) * ph; };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kLeft + pw / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">" << escape(title)
      << "</text>\n";
  for (double t : nice_ticks(xr.lo, xr.hi)) {
    svg << "<line x1=\"" << px(t) << "\" y1=\"" << kTop << "\" x2=\"" << px(t) << "\" y2=\"" << kTop + ph
        << "\" stroke=\"#eee\"/>\n<text x=\"" << px(t) << "\" y=\"" << kTop + ph + 18
        << "\" text-anchor=\"middle\">" << num(t) << "</text>\n";
  }
  for (double t : nice_ticks(yr.lo, yr.hi)) {
    svg << "<line x1=\"" << kLeft << "\" y1=\"" << py(t) << "\" x2=\"" << kLeft + pw << "\" y2=\"" << py(t)
        << "\" stroke=\"#eee\"/>\n<text x=\"" << kLeft - 6 << "\" y=\"" << py(t) + 4
        << "\" text-anchor=\"end\">" << num(log_y ? std::pow(10.0, t) : t) << "</text>\n";
  }
  svg << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << pw << "\" height=\"" << ph
      << "\" fill=\"none\" stroke=\"black\"/>\n"
      << "<text x=\"" << kLeft + pw / 2 << "\" y=\"" << kHeight - 16 << "\" text-anchor=\"middle\">"
      << escape(x_label) << "</text>\n"
      << "<text transform=\"translate(20," << kTop + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
      << escape(y_label) << (log_y ? " (log)" : "") << "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* colour = kColours[k % (sizeof kColours / sizeof *kColours)];
    svg << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"1.5\" points=\"";
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (usable(s.x[i], s.y[i])) svg << num(px(s.x[i])) << "," << num(py(ty(s.y[i]))) << " ";
    svg << "\"/>\n";
    const double ly = kTop + 10 + 20.0 * static_cast<double>(k);
    svg << "<line x1=\"" << kLeft + pw + 12 << "\" y1=\"" << ly << "\" x2=\"" << kLeft + pw + 36 << "\" y2=\""
        << ly << "\" stroke=\"" << colour << "\" stroke-width=\"2\"/>\n<text x=\"" << kLeft + pw + 42
        << "\" y=\"" << ly + 4 << "\">" << escape(s.name) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

std::vector<Series> loss_series(const std::string& metrics_path) {
  std::vector<Series> out;
  for (const auto& record : read_metrics(metrics_path)) {
    if (!record.contains("step")) continue;
    const double step = record["step"].get<double>();
    for (const auto& [key, value] : record.items()) {
      if (key.rfind("loss", 0) != 0 || !value.is_number()) continue;
      auto it = std::find_if(out.begin(), out.end(), [&](const Series& s) { return s.name == key; });
      if (it == out.end()) {
        out.push_back({key, {}, {}});
        it = out.end() - 1;
      }
      it->x.push_back(step);
      it->y.push_back(value.get<double>());
    }
  }
  return out;
}

}  // namespace xd::train

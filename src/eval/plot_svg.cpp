#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "xdistill/eval/plot.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::eval {
namespace {

// Plot geometry in SVG user units (pixels at 1:1).
struct Frame {
  double width = 760, height = 480;
  double left = 72, right = 24, top = 44, bottom = 58;
  double alpha_max = 0.5;
  double x(double alpha) const { return left + alpha / alpha_max * (width - left - right); }
  double y(double c) const { return top + (1.0 - c) * (height - top - bottom); }
};

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};
const char* kDashes[] = {"", "8,4", "2,3", "10,3,2,3"};

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// α* with up to three decimals, at least two: 0.05, 0.145, 0.40.
std::string star_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  std::string s = buf;
  if (s.size() > 4 && s.back() == '0') s.pop_back();
  return s;
}

std::string label_text(double v, double step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, step < 0.1 - 1e-12 ? "%.2f" : "%.1f", v);
  return buf;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// A tick step giving at most ~10 ticks over [0, alpha_max].
double tick_step(double alpha_max) {
  for (double step : {0.01, 0.02, 0.05, 0.1, 0.2})
    if (alpha_max / step <= 10 + 1e-9) return step;
  return 0.2;
}

void draw_axes(std::ostringstream& os, const Frame& f, const std::string& title) {
  const double step = tick_step(f.alpha_max);
  os << "<rect x='0' y='0' width='" << f.width << "' height='" << f.height << "' fill='white'/>\n";
  os << "<g font-family='DejaVu Sans, Helvetica, Arial, sans-serif' font-size='12' fill='#222'>\n";
  for (int i = 0; i * step <= f.alpha_max + 1e-9; ++i) {  // vertical grid and x ticks
    const double a = i * step, x = f.x(a);
    os << "<line x1='" << num(x) << "' y1='" << num(f.y(0)) << "' x2='" << num(x) << "' y2='" << num(f.y(1))
       << "' stroke='#e6e6e6'/>\n";
    os << "<line x1='" << num(x) << "' y1='" << num(f.y(0)) << "' x2='" << num(x) << "' y2='" << num(f.y(0) + 5)
       << "' stroke='#222'/>\n";
    os << "<text x='" << num(x) << "' y='" << num(f.y(0) + 19) << "' text-anchor='middle'>" << label_text(a, step)
       << "</text>\n";
  }
  for (int i = 0; i <= 10; ++i) {  // horizontal grid and y ticks
    const double c = i / 10.0, y = f.y(c);
    os << "<line x1='" << num(f.x(0)) << "' y1='" << num(y) << "' x2='" << num(f.x(f.alpha_max)) << "' y2='"
       << num(y) << "' stroke='#e6e6e6'/>\n";
    os << "<line x1='" << num(f.x(0) - 5) << "' y1='" << num(y) << "' x2='" << num(f.x(0)) << "' y2='" << num(y)
       << "' stroke='#222'/>\n";
    os << "<text x='" << num(f.x(0) - 9) << "' y='" << num(y + 4) << "' text-anchor='end'>" << label_text(c, 0.1)
       << "</text>\n";
  }
  os << "<rect x='" << num(f.x(0)) << "' y='" << num(f.y(1)) << "' width='" << num(f.x(f.alpha_max) - f.x(0))
     << "' height='" << num(f.y(0) - f.y(1)) << "' fill='none' stroke='#222'/>\n";
  // The lossless line C = 0.5.
  os << "<line x1='" << num(f.x(0)) << "' y1='" << num(f.y(0.5)) << "' x2='" << num(f.x(f.alpha_max))
     << "' y2='" << num(f.y(0.5)) << "' stroke='#555' stroke-dasharray='6,4'/>\n";
  os << "<text x='" << num(f.x(f.alpha_max) - 6) << "' y='" << num(f.y(0.5) - 6)
     << "' text-anchor='end' fill='#555'>C = 0.5</text>\n";
  os << "<text x='" << num((f.x(0) + f.x(f.alpha_max)) / 2) << "' y='" << num(f.height - 14)
     << "' text-anchor='middle' font-size='14'>tolerance α</text>\n";
  os << "<text transform='translate(20," << num((f.y(0) + f.y(1)) / 2)
     << ") rotate(-90)' text-anchor='middle' font-size='14'>C<tspan baseline-shift='sub' font-size='11'>α</tspan>"
        " (fraction of benchmarks won or tied)</text>\n";
  os << "<text x='" << num(f.width / 2) << "' y='26' text-anchor='middle' font-size='15' font-weight='bold'>"
     << escape(title) << "</text>\n</g>\n";
}

double value_at(const std::vector<CurveStep>& curve, double alpha) {
  double c = curve.empty() ? 0 : curve.front().c;
  for (const auto& s : curve)
    if (s.alpha <= alpha + kBoundaryEpsilon) c = s.c;
  return c;
}

void draw_series(std::ostringstream& os, const Frame& f, const PlotSeries& s, size_t index) {
  const std::string colour = kColours[index % 7], dash = kDashes[index % 4];
  std::ostringstream path;
  for (size_t i = 0; i < s.curve.size(); ++i) {
    const double end = i + 1 < s.curve.size() ? s.curve[i + 1].alpha : f.alpha_max;
    path << (i == 0 ? "M" : " L") << num(f.x(s.curve[i].alpha)) << "," << num(f.y(s.curve[i].c)) << " L"
         << num(f.x(end)) << "," << num(f.y(s.curve[i].c));
  }
  os << "<path d='" << path.str() << "' fill='none' stroke='" << colour << "' stroke-width='2.5'"
     << (dash.empty() ? "" : " stroke-dasharray='" + dash + "'") << "/>\n";
  if (s.alpha_star && *s.alpha_star <= f.alpha_max + kBoundaryEpsilon) {
    const double x = f.x(*s.alpha_star), y = f.y(value_at(s.curve, *s.alpha_star));
    os << "<line x1='" << num(x) << "' y1='" << num(f.y(0)) << "' x2='" << num(x) << "' y2='" << num(y)
       << "' stroke='" << colour << "' stroke-dasharray='2,3'/>\n";
    os << "<circle cx='" << num(x) << "' cy='" << num(y) << "' r='5.5' fill='white' stroke='" << colour
       << "' stroke-width='2.5'/>\n";
    os << "<text x='" << num(x + 8) << "' y='" << num(y - 8 - 14.0 * index)
       << "' font-family='DejaVu Sans, Helvetica, Arial, sans-serif' font-size='12' fill='" << colour
       << "' stroke='white' stroke-width='4' paint-order='stroke'>α* = " << star_text(*s.alpha_star) << "</text>\n";
  }
}

void draw_legend(std::ostringstream& os, const Frame& f, const std::vector<PlotSeries>& series) {
  const double row = 20, width = 300, height = row * series.size() + 12;
  const double x0 = f.x(f.alpha_max) - width - 10, y0 = f.y(0) - height - 10;
  os << "<g font-family='DejaVu Sans, Helvetica, Arial, sans-serif' font-size='12' fill='#222'>\n";
  os << "<rect x='" << num(x0) << "' y='" << num(y0) << "' width='" << width << "' height='" << num(height)
     << "' fill='white' fill-opacity='0.9' stroke='#999'/>\n";
  for (size_t i = 0; i < series.size(); ++i) {
    const double y = y0 + 16 + row * i;
    const std::string dash = kDashes[i % 4];
    os << "<line x1='" << num(x0 + 10) << "' y1='" << num(y - 4) << "' x2='" << num(x0 + 40) << "' y2='"
       << num(y - 4) << "' stroke='" << kColours[i % 7] << "' stroke-width='2.5'"
       << (dash.empty() ? "" : " stroke-dasharray='" + dash + "'") << "/>\n";
    const auto& s = series[i];
    std::string star = !s.alpha_star                ? "none"
                       : *s.alpha_star > f.alpha_max ? "> " + num(f.alpha_max)
                                                     : star_text(*s.alpha_star);
    os << "<text x='" << num(x0 + 48) << "' y='" << num(y) << "'>" << escape(s.label) << " (α* = " << escape(star)
       << ")</text>\n";
  }
  os << "</g>\n";
}

}  // namespace

std::string render_c_alpha_svg(const std::vector<PlotSeries>& series, double alpha_max,
                               const std::string& title) {
  Frame f;
  f.alpha_max = alpha_max;
  std::ostringstream os;
  os << "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='" << f.width
     << "' height='" << f.height << "' viewBox='0 0 " << f.width << " " << f.height << "'>\n";
  draw_axes(os, f, title);
  for (size_t i = 0; i < series.size(); ++i) draw_series(os, f, series[i], i);
  draw_legend(os, f, series);
  os << "</svg>\n";
  return os.str();
}

std::string find_png_converter() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    auto candidate = std::filesystem::path(dir) / "rsvg-convert";
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

namespace {

void convert_to_png(const std::string& converter, const std::string& svg, const std::string& png) {
  const pid_t pid = fork();
  if (pid < 0) throw Error("cannot start " + converter);
  if (pid == 0) {
    execl(converter.c_str(), converter.c_str(), "--format=png", "--background-color=white", "--zoom=1.5",
          "--output", png.c_str(), svg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(detail_concat(converter, " failed (exit status ", WEXITSTATUS(status), ") converting ", svg,
                              " to ", png));
}

}  // namespace

void write_c_alpha_plot(const std::string& path, const std::vector<PlotSeries>& series, double alpha_max,
                        const std::string& title) {
  const std::string ext = std::filesystem::path(path).extension().string();
  const std::string svg = render_c_alpha_svg(series, alpha_max, title);
  if (ext == ".svg") return fs::write_atomic(path, svg);
  if (ext != ".png") throw UsageError("--plot " + path + ": the plot's name must end in .svg or .png");
  const std::string converter = find_png_converter();
  if (converter.empty())
    throw Error("--plot " + path + ": writing PNG needs rsvg-convert (Debian package librsvg2-bin), which "
                "is not on PATH; write the plot as SVG instead (--plot out.svg), or install it");
  const auto tmp_svg = fs::temp_sibling(path).string() + ".svg";
  const auto tmp_png = fs::temp_sibling(path).string() + ".png";
  fs::write_atomic(tmp_svg, svg);
  try {
    convert_to_png(converter, tmp_svg, tmp_png);
  } catch (...) {
    std::filesystem::remove(tmp_svg);
    std::filesystem::remove(tmp_png);
    throw;
  }
  std::filesystem::remove(tmp_svg);
  std::filesystem::rename(tmp_png, path);
}

}  // namespace xd::eval

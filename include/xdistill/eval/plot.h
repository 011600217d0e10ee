// The C_α-against-α plot of `eval compare`: SVG written by hand (no dependency),
// with axes, ticks, grid, a legend, the C = 0.5 line and an α* marker per student.
// PNG output converts that SVG with `rsvg-convert` (Debian: librsvg2-bin) when it is
// on PATH; without it, asking for a .png is an error that suggests .svg.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "xdistill/eval/win_tie.h"

namespace xd::eval {

struct PlotSeries {
  std::string label;
  std::vector<CurveStep> curve;     // exact steps on [0, alpha_max]
  std::optional<double> alpha_star; // over [0, 1]; drawn when ≤ alpha_max
};

std::string render_c_alpha_svg(const std::vector<PlotSeries>& series, double alpha_max,
                               const std::string& title);

// Writes the plot to `path`; the format follows the extension (.svg or .png).
void write_c_alpha_plot(const std::string& path, const std::vector<PlotSeries>& series,
                        double alpha_max, const std::string& title);

// Path of the SVG-to-PNG converter, or empty when none is installed.
std::string find_png_converter();

}  // namespace xd::eval

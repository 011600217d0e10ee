// A loss-curve plot rendered from metrics.jsonl as a self-contained SVG (written by
// hand: no plotting library). `xdistill plot loss RUN_DIR --out loss.svg`.
#pragma once
#include <string>
#include <vector>

namespace xd::train {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// One SVG with a line per series, axes with ticks, and a legend. Non-finite points
// are skipped. Throws xd::Error if no series has a finite point.
std::string render_svg_plot(const std::vector<Series>& series, const std::string& title,
                            const std::string& x_label, const std::string& y_label,
                            bool log_y = false);

// The loss parts of a run's metrics (every key starting with "loss"), against "step".
std::vector<Series> loss_series(const std::string& metrics_path);

}  // namespace xd::train

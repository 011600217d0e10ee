// The demo's final report: teacher and student on every task, recovery, C_α and α*
// (with a paired-bootstrap interval), the long-range recall probe by distance, and the
// C_α plot. Written into the demo directory as report.json, report.md and c_alpha.svg.
#pragma once
#include <filesystem>

namespace xd::demo {

void write_demo_report(const std::filesystem::path& root);

}  // namespace xd::demo

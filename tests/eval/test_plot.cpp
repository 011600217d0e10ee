// The C_α plot: SVG content, PNG through rsvg-convert where installed, and the
// error that suggests .svg where it is not.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "xdistill/eval/plot.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

using namespace xd::eval;
namespace stdfs = std::filesystem;

namespace {
std::vector<PlotSeries> two_students() {
  return {{"student A", c_alpha_curve({0.0, 0.0, 0.05, 0.05, 0.1, 0.1, 0.2, 0.2}, 0.5), 0.05},
          {"student <B>", c_alpha_curve({0.3, 0.4, 0.7}, 0.5), 0.4}};
}
size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST(Plot, SvgHasAxesLegendHalfLineAndMarkers) {
  const std::string svg = render_c_alpha_svg(two_students(), 0.5, "C_alpha vs alpha");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("C = 0.5"), std::string::npos);
  EXPECT_NE(svg.find("tolerance α"), std::string::npos);
  EXPECT_NE(svg.find("student A (α* = 0.05)"), std::string::npos);
  EXPECT_NE(svg.find("student &lt;B&gt; (α* = 0.40)"), std::string::npos);  // labels are escaped
  EXPECT_EQ(count(svg, "<circle"), 2u);                                   // one α* marker per student
  EXPECT_EQ(count(svg, ">0.05</text>"), 1u);                             // x ticks every 0.05 up to 0.5
  EXPECT_EQ(count(svg, ">0.50</text>"), 1u);
  EXPECT_EQ(count(svg, "<path"), 2u);
}

TEST(Plot, AlphaStarBeyondRangeHasNoMarker) {
  std::vector<PlotSeries> s = {{"far", c_alpha_curve({0.8, 0.9}, 0.5), 0.8}, {"none", c_alpha_curve({2.0}, 0.5), std::nullopt}};
  const std::string svg = render_c_alpha_svg(s, 0.5, "t");
  EXPECT_EQ(count(svg, "<circle"), 0u);
  EXPECT_NE(svg.find("far (α* = &gt; 0.50)"), std::string::npos);
  EXPECT_NE(svg.find("none (α* = none)"), std::string::npos);
}

TEST(Plot, WritesSvgAndPng) {
  const auto dir = stdfs::temp_directory_path() / "xd_eval_plot";
  stdfs::create_directories(dir);
  write_c_alpha_plot((dir / "c.svg").string(), two_students(), 0.5, "t");
  EXPECT_NE(xd::fs::read_text(dir / "c.svg").find("<svg"), std::string::npos);
  EXPECT_THROW(write_c_alpha_plot((dir / "c.pdf").string(), two_students(), 0.5, "t"), xd::UsageError);
  if (find_png_converter().empty()) GTEST_SKIP() << "rsvg-convert not installed: PNG output not testable here";
  write_c_alpha_plot((dir / "c.png").string(), two_students(), 0.5, "t");
  const std::string png = xd::fs::read_text(dir / "c.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST(Plot, PngWithoutConverterSuggestsSvg) {
  const char* old = std::getenv("PATH");
  const std::string saved = old ? old : "";
  setenv("PATH", "/nonexistent", 1);
  try {
    write_c_alpha_plot((stdfs::temp_directory_path() / "x.png").string(), two_students(), 0.5, "t");
    setenv("PATH", saved.c_str(), 1);
    FAIL() << "expected an error";
  } catch (const xd::Error& e) {
    setenv("PATH", saved.c_str(), 1);
    EXPECT_NE(std::string(e.what()).find("--plot out.svg"), std::string::npos) << e.what();
  }
}

// Torch-free training machinery: schedules, metrics, plots, checkpoint directories,
// signals, and the teacher-cache format.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>

#include "xdistill/train/checkpoint_dirs.h"
#include "xdistill/train/loss_plot.h"
#include "xdistill/train/lr_schedule.h"
#include "xdistill/train/metrics_log.h"
#include "xdistill/train/stop_signal.h"
#include "xdistill/train/teacher_cache.h"
#include "xdistill/util/error.h"

namespace stdfs = std::filesystem;
using namespace xd::train;

namespace {
stdfs::path fresh_dir(const std::string& name) {
  auto p = stdfs::temp_directory_path() / ("xd_train_" + name + "_" + std::to_string(::getpid()));
  stdfs::remove_all(p);
  stdfs::create_directories(p);
  return p;
}
}  // namespace

TEST(LrSchedule, WarmupCosineHitsPeakAndFloor) {
  LrSchedule s{ScheduleKind::WarmupCosine, 1e-2, 1e-5, 10, 110};
  s.validate();
  EXPECT_DOUBLE_EQ(s.at(0), 1e-3);      // (0+1)/10 of peak
  EXPECT_DOUBLE_EQ(s.at(9), 1e-2);      // end of warm-up
  EXPECT_DOUBLE_EQ(s.at(10), 1e-2);     // cosine starts at the peak
  EXPECT_NEAR(s.at(109), 1e-5, 1e-15);  // and ends at the floor
  // Midpoint of the cosine: halfway between peak and floor.
  LrSchedule odd{ScheduleKind::WarmupCosine, 2.0, 0.0, 0, 101};
  EXPECT_NEAR(odd.at(50), 1.0, 1e-12);
  for (int64_t t = 10; t < 109; ++t) EXPECT_GE(s.at(t), s.at(t + 1));
}

TEST(LrSchedule, WarmupConstant) {
  LrSchedule s{ScheduleKind::WarmupConstant, 1e-5, 0.0, 4, 100};
  EXPECT_DOUBLE_EQ(s.at(1), 0.5e-5);
  EXPECT_DOUBLE_EQ(s.at(3), 1e-5);
  EXPECT_DOUBLE_EQ(s.at(99), 1e-5);
  LrSchedule bad{ScheduleKind::WarmupConstant, 1e-5, 0.0, 200, 100};
  EXPECT_THROW(bad.validate(), xd::Error);
  EXPECT_THROW(parse_schedule_kind("linear"), xd::Error);
}

TEST(MetricsLog, AppendsAndTruncatesOnResume) {
  auto dir = fresh_dir("metrics");
  const std::string path = (dir / "metrics.jsonl").string();
  {
    MetricsLog log(path);
    for (int s = 1; s <= 5; ++s) log.write({{"step", s}, {"loss", 1.0 / s}});
  }
  EXPECT_EQ(read_metrics(path).size(), 5u);
  {
    MetricsLog log(path, /*resume_step=*/4);  // records of steps >= 4 were past the checkpoint
    log.write({{"step", 4}, {"loss", 0.3}});
  }
  auto records = read_metrics(path);
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records.back()["step"], 4);
  EXPECT_DOUBLE_EQ(records.back()["loss"].get<double>(), 0.3);
  std::ofstream(path, std::ios::app) << "{broken\n";
  try {
    read_metrics(path);
    FAIL() << "a broken line must be reported";
  } catch (const xd::Error& e) {
    EXPECT_NE(std::string(e.what()).find(":5:"), std::string::npos) << e.what();
  }
}

TEST(LossPlot, RendersEverySeriesAsSvg) {
  auto dir = fresh_dir("plot");
  const std::string path = (dir / "metrics.jsonl").string();
  {
    MetricsLog log(path);
    for (int s = 1; s <= 20; ++s)
      log.write({{"step", s}, {"loss", 3.0 / s}, {"loss_ce", 2.0 / s}, {"lr", 1e-3}});
  }
  auto series = loss_series(path);
  ASSERT_EQ(series.size(), 2u);  // lr is not a loss
  EXPECT_EQ(series[0].name, "loss");
  EXPECT_EQ(series[0].x.size(), 20u);
  const std::string svg = render_svg_plot(series, "run <a>", "step", "loss", true);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("run &lt;a&gt;"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), 'p') > 0, true);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  EXPECT_EQ(polylines, 2u);
  EXPECT_THROW(render_svg_plot({{"empty", {}, {}}}, "t", "x", "y"), xd::Error);
}

TEST(CheckpointDirs, PublishesAtomicallyAndKeepsTheLastK) {
  auto dir = fresh_dir("ckpt");
  CheckpointDirs dirs(dir);
  EXPECT_FALSE(dirs.latest().has_value());
  for (int64_t step : {10, 20, 30, 40}) {
    auto staging = dirs.staging_for(step);
    std::ofstream(staging / "state.json") << step;
    EXPECT_TRUE(dirs.list().size() <= 2u);  // the staging directory is never listed
    dirs.publish(staging, step, /*keep=*/2);
  }
  auto all = dirs.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 30);
  EXPECT_EQ(all[1].first, 40);
  EXPECT_EQ(dirs.latest()->filename().string(), "step-00000040");
  // A leftover staging directory (crash mid-save) is ignored, then cleared.
  auto leftover = dirs.staging_for(50);
  EXPECT_EQ(dirs.list().size(), 2u);
  dirs.staging_for(50);
  EXPECT_FALSE(stdfs::exists(leftover));
}

TEST(StopSignal, SigtermSetsTheFlagInsteadOfKilling) {
  StopSignal stop;
  EXPECT_FALSE(stop.requested());
  std::raise(SIGTERM);
  EXPECT_TRUE(stop.requested());
  EXPECT_EQ(stop.signal_number(), SIGTERM);
}

TEST(TeacherCache, HalfConversionRoundsToNearest) {
  for (float f : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, -13.8125f})
    EXPECT_EQ(half_to_float(float_to_half(f)), f) << f;
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(1e6f))));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-30.0f, 0.0f);
  for (int i = 0; i < 1000; ++i) {
    const float f = u(rng);
    EXPECT_LE(std::fabs(half_to_float(float_to_half(f)) - f), std::fabs(f) * (1.0f / 2048.0f)) << f;
  }
}

TEST(TeacherCache, RoundTripsRowsInAnyOrder) {
  auto dir = fresh_dir("cache");
  const int64_t T = 7, K = 5;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-20.0f, 0.0f);
  std::vector<TopkRow> rows;
  for (int64_t id : {12, 3, 40}) {
    TopkRow r;
    r.row_id = id;
    for (int64_t i = 0; i < T * K; ++i) {
      r.ids.push_back(static_cast<int32_t>(rng() % 50000));
      r.logprobs.push_back(u(rng));
    }
    rows.push_back(r);
  }
  for (const std::string dtype : {"f32", "f16"}) {
    const auto path = dir / ("cache_" + dtype);
    TeacherCacheMeta meta{T, K, dtype, {{"teacher", "tiny"}}, 0};
    {
      TeacherCacheWriter w(path, meta);
      for (const auto& r : rows) w.add(r);
      EXPECT_THROW(w.add(rows[0]), xd::Error);
      EXPECT_FALSE(stdfs::exists(path / "meta.json"));  // nothing visible before finish()
      w.finish();
    }
    TeacherCacheReader reader(path);
    EXPECT_EQ(reader.meta().rows, 3);
    EXPECT_EQ(reader.meta().source["teacher"], "tiny");
    EXPECT_FALSE(reader.has(4));
    EXPECT_THROW(reader.read(4), xd::Error);
    for (const auto& r : rows) {
      auto got = reader.read(r.row_id);
      EXPECT_EQ(got.ids, r.ids);
      for (size_t i = 0; i < r.logprobs.size(); ++i) {
        if (dtype == "f32") EXPECT_EQ(got.logprobs[i], r.logprobs[i]);
        else EXPECT_NEAR(got.logprobs[i], r.logprobs[i], 20.0f / 1024.0f);
      }
    }
  }
  {  // an abandoned writer leaves nothing behind
    TeacherCacheWriter w(dir / "abandoned", TeacherCacheMeta{T, K, "f32", {}, 0});
    w.add(rows[0]);
  }
  EXPECT_FALSE(stdfs::exists(dir / "abandoned"));
  for (const auto& e : stdfs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

// The machine-readable metrics file of a run: one JSON object per line
// (metrics.jsonl). Appends survive a resume: records at or after the resume step
// are dropped first, so the file never holds two records for one step.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace xd::train {

class MetricsLog {
 public:
  // Opens `path` for appending; with `resume_step` >= 0 it first keeps only records
  // whose "step" is below resume_step (a crashed run may have logged past its last
  // checkpoint).
  explicit MetricsLog(std::string path, int64_t resume_step = -1);
  void write(const nlohmann::json& record);  // one line, flushed
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Every record of a metrics file, in order; malformed lines are an xd::Error naming the line.
std::vector<nlohmann::json> read_metrics(const std::string& path);

}  // namespace xd::train

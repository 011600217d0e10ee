#include "xdistill/train/metrics_log.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::train {

MetricsLog::MetricsLog(std::string path, int64_t resume_step) : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  if (resume_step >= 0 && std::filesystem::exists(p)) {
    std::string kept;
    for (const auto& record : read_metrics(path_)) {
      if (record.value("step", int64_t{0}) < resume_step) kept += record.dump() + "\n";
    }
    fs::write_atomic(p, kept);
  } else if (resume_step < 0) {
    fs::write_atomic(p, "");  // a fresh run starts a fresh file
  }
}

void MetricsLog::write(const nlohmann::json& record) {
  std::ofstream out(path_, std::ios::app);
  if (!out) throw Error(path_ + ": cannot open the metrics file for appending");
  out << record.dump() << '\n';
  out.flush();
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the metrics file");
  std::vector<nlohmann::json> records;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const std::exception& e) {
      throw Error(path + ":" + std::to_string(line_no) + ": not a JSON record: " + e.what());
    }
  }
  return records;
}

}  // namespace xd::train

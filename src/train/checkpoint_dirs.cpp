#include "xdistill/train/checkpoint_dirs.h"

#include <algorithm>
#include <cstdio>

#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::train {
namespace stdfs = std::filesystem;

namespace {
constexpr const char* kPrefix = "step-";

// "step-00001234" -> 1234; anything else (staging leftovers included) -> -1.
int64_t parse_step(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(5);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}
}  // namespace

CheckpointDirs::CheckpointDirs(stdfs::path run_dir) : root_(std::move(run_dir) / "checkpoints") {}

stdfs::path CheckpointDirs::path_for(int64_t step) const {
  char name[32];
  std::snprintf(name, sizeof name, "%s%08lld", kPrefix, static_cast<long long>(step));
  return root_ / name;
}

stdfs::path CheckpointDirs::staging_for(int64_t step) const {
  stdfs::create_directories(root_);
  // Clear leftovers of interrupted saves first: they never count as checkpoints.
  for (const auto& entry : stdfs::directory_iterator(root_)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp.") != std::string::npos) fs::remove_tree(entry.path());
  }
  const stdfs::path staging = fs::temp_sibling(path_for(step));
  stdfs::create_directories(staging);
  return staging;
}

stdfs::path CheckpointDirs::publish(const stdfs::path& staging, int64_t step, int keep) {
  const stdfs::path dest = path_for(step);
  fs::replace_directory(staging, dest);
  if (keep > 0) {
    auto all = list();
    const int64_t excess = static_cast<int64_t>(all.size()) - keep;
    for (int64_t i = 0; i < excess; ++i) fs::remove_tree(all[static_cast<size_t>(i)].second);
  }
  return dest;
}

std::vector<std::pair<int64_t, stdfs::path>> CheckpointDirs::list() const {
  std::vector<std::pair<int64_t, stdfs::path>> found;
  if (!stdfs::is_directory(root_)) return found;
  for (const auto& entry : stdfs::directory_iterator(root_)) {
    if (!entry.is_directory()) continue;
    const int64_t step = parse_step(entry.path().filename().string());
    if (step >= 0) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::optional<stdfs::path> CheckpointDirs::latest() const {
  auto all = list();
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

}  // namespace xd::train

// Where a run's checkpoints live and which of them are kept. A checkpoint is a
// directory RUN_DIR/checkpoints/step-00001234 that appears atomically (built in a
// temporary sibling, then renamed), so a directory with that name is always complete.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace xd::train {

class CheckpointDirs {
 public:
  explicit CheckpointDirs(std::filesystem::path run_dir);

  std::filesystem::path root() const { return root_; }
  std::filesystem::path path_for(int64_t step) const;
  // A fresh, empty staging directory to build the checkpoint of `step` in.
  std::filesystem::path staging_for(int64_t step) const;
  // Renames the staging directory into place, then deletes all but the newest `keep`.
  std::filesystem::path publish(const std::filesystem::path& staging, int64_t step, int keep);
  // Completed checkpoints, by ascending step (staging leftovers are ignored).
  std::vector<std::pair<int64_t, std::filesystem::path>> list() const;
  std::optional<std::filesystem::path> latest() const;

 private:
  std::filesystem::path root_;
};

}  // namespace xd::train

// The final marker of a sharded checkpoint (torch-free).
#include <nlohmann/json.hpp>

#include <cstdio>

#include "xdistill/dist/checkpoint_marker.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::dist {
namespace stdfs = std::filesystem;

std::vector<std::string> expected_shards(int world) {
  std::vector<std::string> files;
  for (int r = 0; r < world; ++r) {
    char name[64];
    std::snprintf(name, sizeof name, "optim/shard-%05d-of-%05d.pt", r, world);
    files.emplace_back(name);
  }
  return files;
}

void write_complete_marker(const stdfs::path& dir, int64_t step, int world) {
  nlohmann::json marker = {{"format", "xdistill-sharded-checkpoint"}, {"revision", 1}, {"step", step},
                           {"world_size", world}, {"shards", expected_shards(world)}};
  fs::write_atomic(dir / kCompleteMarker, marker.dump(2) + "\n");
}

namespace {
nlohmann::json read_marker(const stdfs::path& dir) {
  const stdfs::path file = dir / kCompleteMarker;
  if (!stdfs::is_regular_file(file)) throw Error(dir.string() + ": no " + kCompleteMarker + ": the checkpoint is incomplete");
  try {
    return nlohmann::json::parse(fs::read_text(file));
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": not valid JSON: " + e.what());
  }
}
}  // namespace

bool checkpoint_complete(const stdfs::path& dir) {
  if (!stdfs::is_regular_file(dir / kCompleteMarker)) return false;
  try {
    const auto marker = read_marker(dir);
    for (const auto& shard : marker.at("shards"))
      if (!stdfs::is_regular_file(dir / shard.get<std::string>())) return false;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

int checkpoint_world_size(const stdfs::path& dir) {
  const auto marker = read_marker(dir);
  if (!marker.contains("world_size") || !marker["world_size"].is_number_integer())
    throw Error((dir / kCompleteMarker).string() + ": no integer 'world_size'");
  return marker["world_size"].get<int>();
}

}  // namespace xd::dist

// The final marker of a sharded checkpoint and the shard files it vouches for
// (torch-free; the commit protocol is in checkpoint.h).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace xd::dist {

inline constexpr const char* kCompleteMarker = "COMPLETE.json";

// The optimizer shard files a checkpoint of `world` ranks holds, relative to it:
// optim/shard-RRRRR-of-WWWWW.pt
std::vector<std::string> expected_shards(int world);
// Writes COMPLETE.json (step, world size, shard list) atomically into `dir`.
void write_complete_marker(const std::filesystem::path& dir, int64_t step, int world);
// True when `dir` has the marker and every shard the marker lists.
bool checkpoint_complete(const std::filesystem::path& dir);
// World size recorded in the marker; throws xd::Error when there is none.
int checkpoint_world_size(const std::filesystem::path& dir);

}  // namespace xd::dist

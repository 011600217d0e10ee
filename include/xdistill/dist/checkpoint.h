// Checkpoints that are atomic across ranks. A checkpoint directory is built in a
// staging directory chosen by rank 0: rank 0 writes the model and the trainer's
// state, every rank writes its optimizer shard (ShardedAdamW::save_shard). Then
// commit_checkpoint() waits for all ranks, checks that every shard is there,
// writes the final marker COMPLETE.json and lets rank 0 publish the directory
// (rename into place). A checkpoint without the marker, or whose marker names a
// missing shard, does not count (checkpoint_complete).
//
// Every rank calls these functions, in the same order.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>

#include "xdistill/dist/checkpoint_marker.h"
#include "xdistill/dist/process_group.h"

namespace xd::dist {

// Rank 0 runs `make_staging` (e.g. CheckpointDirs::staging_for); all ranks get its path.
std::filesystem::path agree_on_staging(ProcessGroup& pg, const std::function<std::filesystem::path()>& make_staging);

// After every rank has written its part into `staging`: barrier, verification of the
// shards, the marker, `publish` on rank 0 (renaming staging into place), barrier.
// Returns the published path (from `publish`, broadcast to all ranks). Throws on
// every rank if a shard is missing.
std::filesystem::path commit_checkpoint(ProcessGroup& pg, const std::filesystem::path& staging, int64_t step,
                                        const std::function<std::filesystem::path()>& publish);

}  // namespace xd::dist

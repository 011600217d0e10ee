// Training checkpoints: RUN_DIR/checkpoints/step-NNNNNNNN/ with
//   model/              the model as `xdistill` loads it (safetensors + config.json)
//   optimizer/          fp32 master weights and both moments (safetensors), or with
//                       dist.shard_optimizer:
//   optim/shard-RRRRR-of-WWWWW.pt + COMPLETE.json   one shard per rank, then the marker
//   trainer_state.json  format revision, step, data-loader state, RNG states, recipe,
//                       world size
// built in a staging directory and renamed into place (CheckpointDirs). With several
// ranks rank 0 writes the model and the trainer state, every rank its optimizer
// shard, and the directory is published only once all shards and the marker are
// there (dist::commit_checkpoint).
//
// Resume: an unsharded state resumes unsharded or sharded (each rank takes its
// slices); a sharded one resumes sharded with any number of ranks (the shards are
// re-cut automatically, dist::ShardedAdamW::load_shard) but not unsharded.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>

#include "session.h"
#include "xdistill/dist/checkpoint.h"
#include "xdistill/io/safetensors.h"
#include "xdistill/io/torch_io.h"
#include "xdistill/train/checkpoint_dirs.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::train {
namespace stdfs = std::filesystem;

namespace {
constexpr int kTrainerStateRevision = 1;

std::string to_hex(const at::Tensor& bytes) {
  static const char* digits = "0123456789abcdef";
  const at::Tensor b = bytes.contiguous().to(at::kByte);
  const uint8_t* p = b.data_ptr<uint8_t>();
  std::string out;
  for (int64_t i = 0; i < b.numel(); ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

at::Tensor from_hex(const std::string& hex) {
  at::Tensor out = torch::empty({static_cast<int64_t>(hex.size() / 2)}, torch::kUInt8);
  uint8_t* p = out.data_ptr<uint8_t>();
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) p[i / 2] = static_cast<uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1]));
  return out;
}
}  // namespace

std::string save_training_checkpoint(const TrainSession& s) {
  dist::ProcessGroup& group = *s.group;
  CheckpointDirs dirs(s.recipe.run_dir);
  const stdfs::path staging = dist::agree_on_staging(group, [&] { return dirs.staging_for(s.step); });
  if (group.is_main()) {
    models::save_model(*s.model, (staging / "model").string());
    if (s.optimizer) io::save_tensors((staging / "optimizer").string(), s.optimizer->state_tensors());
    nlohmann::json state = {
        {"format", "xdistill-train-checkpoint"},
        {"revision", kTrainerStateRevision},
        {"step", s.step},
        {"optimizer_step", s.optimizer ? s.optimizer->steps_taken() : s.sharded->step_count()},
        {"optimizer_sharded", s.sharded != nullptr},
        {"world_size", group.size()},
        {"rows_per_step", group.size() * s.recipe.micro_batch * s.recipe.grad_accum},
        {"stage", to_string(s.recipe.stage)},
        {"data", s.data->state()},
        {"rng_cpu", to_hex(at::detail::getDefaultCPUGenerator().get_state())},
        {"recipe", s.resolved_config},
    };
    fs::write_atomic(staging / "trainer_state.json", state.dump(2) + "\n");
  }
  const int keep = static_cast<int>(s.recipe.checkpoint_keep);
  auto publish = [&] { return dirs.publish(staging, s.step, keep); };
  if (s.sharded) {
    s.sharded->save_shard(staging);
    return dist::commit_checkpoint(group, staging, s.step, publish).string();
  }
  // Unsharded: rank 0 wrote everything; the others learn the path once it is in place.
  std::string dest;
  if (group.is_main()) dest = publish().string();
  return group.broadcast_string(dest, 0);
}

namespace {

// The optimizer part of a checkpoint, into whichever optimizer this run has.
void restore_optimizer(TrainSession& s, const stdfs::path& dir, const nlohmann::json& state) {
  const bool sharded_state = stdfs::exists(dir / dist::kCompleteMarker);
  const int64_t optimizer_step = state.at("optimizer_step").get<int64_t>();
  if (sharded_state) {
    XD_CHECK(dist::checkpoint_complete(dir), dir.string(), ": the sharded optimizer state is incomplete (",
             dist::kCompleteMarker, " names a missing shard)");
    if (!s.sharded)
      throw UsageError(dir.string() + ": the optimizer state is sharded over " +
                       std::to_string(dist::checkpoint_world_size(dir)) + " ranks; this run of " +
                       std::to_string(s.group->size()) + " rank(s) keeps it whole (dist.shard_optimizer: " +
                       s.recipe.shard_optimizer + "). Resume with --set dist.shard_optimizer=true: sharded " +
                       "checkpoints resume with any number of ranks, one included");
    s.sharded->load_shard(dir);  // re-cuts the shards when the world size differs
    return;
  }
  const io::Checkpoint optimizer_ck = io::Checkpoint::open((dir / "optimizer").string());
  if (s.sharded) {
    // A whole state (one process, or unsharded ranks): each rank takes its slices.
    s.sharded->load_full_state(
        [&](const std::string& name, const std::string& field) {
          return io::load_tensor(optimizer_ck, field + "/" + name, at::kFloat, at::Device(at::kCPU));
        },
        optimizer_step);
    return;
  }
  std::map<std::string, at::Tensor> tensors;
  for (const auto& name : optimizer_ck.names())
    tensors[name] = io::load_tensor(optimizer_ck, name, at::kFloat, s.device);
  s.optimizer->load_state(tensors, optimizer_step);
}

}  // namespace

bool restore_training_checkpoint(TrainSession& s) {
  const auto start = std::chrono::steady_clock::now();
  CheckpointDirs dirs(s.recipe.run_dir);
  const auto latest = dirs.latest();
  if (!latest) return false;
  const stdfs::path dir = *latest;
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(fs::read_text(dir / "trainer_state.json"));
  } catch (const nlohmann::json::exception& e) {
    throw Error((dir / "trainer_state.json").string() + ": invalid JSON: " + e.what());
  }
  XD_CHECK(state.value("format", "") == "xdistill-train-checkpoint", dir.string(), ": not a training checkpoint");
  XD_CHECK(state.value("revision", 0) <= kTrainerStateRevision, dir.string(), ": checkpoint revision ",
           state.value("revision", 0), " is newer than this xdistill reads (", kTrainerStateRevision,
           "); upgrade xdistill");
  XD_CHECK(state.value("stage", "") == to_string(s.recipe.stage), dir.string(), ": the checkpoint is of stage '",
           state.value("stage", ""), "', the recipe's is '", to_string(s.recipe.stage), "'");

  const int64_t rows_now = s.group->size() * s.recipe.micro_batch * s.recipe.grad_accum;
  const int64_t rows_then = state.value("rows_per_step", rows_now);
  if (rows_then != rows_now && s.group->is_main())
    log::warn(dir.string(), " was written by ", state.value("world_size", 1), " rank(s) with ", rows_then,
              " rows per step; this run has ", s.group->size(), " rank(s) and ", rows_now,
              " rows per step (world size x batch.micro_batch x batch.grad_accum)");

  models::load_weights(*s.model, (dir / "model").string());
  restore_optimizer(s, dir, state);
  s.data->restore(state.at("data"));
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();
  cpu_generator.set_state(from_hex(state.at("rng_cpu").get<std::string>()));
  s.step = state.at("step").get<int64_t>();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("resumed from ", dir.string(), " at step ", s.step, " (loaded in ", static_cast<int>(seconds + 0.5), " s)");
  return true;
}

}  // namespace xd::train

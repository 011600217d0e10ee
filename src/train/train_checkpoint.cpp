// Training checkpoints: RUN_DIR/checkpoints/step-NNNNNNNN/ with
//   model/              the model as `xdistill` loads it (safetensors + config.json)
//   optimizer/          fp32 master weights and both moments (safetensors)
//   trainer_state.json  format revision, step, data-loader state, RNG states, recipe
// built in a staging directory and renamed into place (CheckpointDirs).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>

#include "session.h"
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
  CheckpointDirs dirs(s.recipe.run_dir);
  const stdfs::path staging = dirs.staging_for(s.step);
  models::save_model(*s.model, (staging / "model").string());
  io::save_tensors((staging / "optimizer").string(), s.optimizer->state_tensors());
  nlohmann::json state = {
      {"format", "xdistill-train-checkpoint"},
      {"revision", kTrainerStateRevision},
      {"step", s.step},
      {"optimizer_step", s.optimizer->steps_taken()},
      {"stage", to_string(s.recipe.stage)},
      {"data", s.data->state()},
      {"rng_cpu", to_hex(at::detail::getDefaultCPUGenerator().get_state())},
      {"recipe", s.resolved_config},
  };
  fs::write_atomic(staging / "trainer_state.json", state.dump(2) + "\n");
  const stdfs::path dest = dirs.publish(staging, s.step, static_cast<int>(s.recipe.checkpoint_keep));
  return dest.string();
}

bool restore_training_checkpoint(TrainSession& s) {
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

  models::load_weights(*s.model, (dir / "model").string());
  const io::Checkpoint optimizer_ck = io::Checkpoint::open((dir / "optimizer").string());
  std::map<std::string, at::Tensor> tensors;
  for (const auto& name : optimizer_ck.names())
    tensors[name] = io::load_tensor(optimizer_ck, name, at::kFloat, s.device);
  s.optimizer->load_state(tensors, state.at("optimizer_step").get<int64_t>());
  s.data->restore(state.at("data"));
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();
  cpu_generator.set_state(from_hex(state.at("rng_cpu").get<std::string>()));
  s.step = state.at("step").get<int64_t>();
  log::info("resumed from ", dir.string(), " at step ", s.step);
  return true;
}

}  // namespace xd::train

#include "xdistill/train/recipe.h"

#include "xdistill/util/error.h"

namespace xd::train {

const char* to_string(Stage stage) {
  switch (stage) {
    case Stage::Align: return "align";
    case Stage::Distill: return "distill";
    case Stage::Pretrain: return "pretrain";
  }
  return "?";
}

namespace {
Stage parse_stage(const std::string& s) {
  if (s == "align") return Stage::Align;
  if (s == "distill") return Stage::Distill;
  if (s == "pretrain") return Stage::Pretrain;
  throw UsageError("stage: '" + s + "' is not one of align, distill, pretrain");
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError(message);
}
}  // namespace

TrainRecipe recipe_from_config(const config::Config& c) {
  TrainRecipe r;
  auto str = [&](const char* key) { return c.has(key) ? c.get<std::string>(key) : std::string(); };
  r.name = c.get<std::string>("run.name");
  r.run_dir = c.get<std::string>("run.dir");
  r.output = c.has("run.output") ? c.get<std::string>("run.output") : r.run_dir + "/final";
  r.device = c.get<std::string>("run.device");
  r.seed = static_cast<uint64_t>(c.get<int64_t>("run.seed"));
  r.log_every = c.get<int64_t>("run.log_every");
  r.stop_after_steps = c.get<int64_t>("run.stop_after_steps");
  r.peak_tflops = c.get<double>("run.peak_tflops");
  r.stage = parse_stage(c.get<std::string>("stage"));

  r.teacher_path = c.get<std::string>("teacher.path");
  r.teacher_dtype = c.get<std::string>("teacher.dtype");
  r.teacher_cache = str("teacher.cache");
  r.create_tiny_teacher = c.get<bool>("teacher.create_tiny");
  r.teacher_random_shape = str("teacher.random_shape");

  r.student_init = str("student.init");
  r.student.window = c.get<int64_t>("student.window");
  r.student.sinks = c.get<int64_t>("student.sinks");
  r.student.feature_map = c.get<std::string>("student.feature_map");
  r.student.feature_dim = c.get<int64_t>("student.feature_dim");
  r.student.gate_softcap = c.get<double>("student.gate_softcap");
  r.student.forget_init_min = c.get<double>("student.forget_init_min");
  r.student.forget_init_max = c.get<double>("student.forget_init_max");
  r.student.input_gate_bias = c.get<double>("student.input_gate_bias");
  r.student.output_gate_bias = c.get<double>("student.output_gate_bias");
  r.student.chunk_size = c.get<int64_t>("student.chunk_size");

  for (const auto& rec : c.records("data.mixture")) {
    DataSourceSpec s;
    require(rec.has("path"), rec.where() + ": data.mixture entry needs a path");
    s.path = rec.get<std::string>("path");
    s.weight = rec.has("weight") ? rec.get<double>("weight") : 1.0;
    s.name = rec.has("name") ? rec.get<std::string>("name") : std::string();
    r.mixture.push_back(s);
  }
  r.seq_len = c.get<int64_t>("data.seq_len");
  r.tokenizer = str("data.tokenizer");
  r.synthetic_vocab = c.get<int64_t>("data.synthetic_vocab");
  r.synthetic_rows = c.get<int64_t>("data.synthetic_rows");

  r.lr = c.get<double>("optim.lr");
  r.min_lr = c.get<double>("optim.min_lr");
  r.weight_decay = c.get<double>("optim.weight_decay");
  r.beta1 = c.get<double>("optim.beta1");
  r.beta2 = c.get<double>("optim.beta2");
  r.eps = c.get<double>("optim.eps");
  r.grad_clip = c.get<double>("optim.grad_clip");

  r.schedule.kind = parse_schedule_kind(c.get<std::string>("schedule.kind"));
  r.schedule.peak_lr = r.lr;
  r.schedule.min_lr = r.min_lr;
  r.schedule.warmup_steps = c.get<int64_t>("schedule.warmup_steps");
  r.schedule.total_steps = c.get<int64_t>("schedule.steps");

  r.micro_batch = c.get<int64_t>("batch.micro_batch");
  r.grad_accum = c.get<int64_t>("batch.grad_accum");
  r.ce_weight = c.get<double>("loss.ce_weight");
  r.kl_weight = c.get<double>("loss.kl_weight");
  r.top_k = c.get<int64_t>("loss.top_k");
  r.temperature = c.get<double>("loss.temperature");
  r.compute_dtype = c.get<std::string>("precision.compute");
  r.activation_checkpointing = c.get<bool>("precision.activation_checkpointing");
  r.checkpoint_every = c.get<int64_t>("checkpoint.every");
  r.checkpoint_keep = c.get<int64_t>("checkpoint.keep");
  r.shard_optimizer = c.get<std::string>("dist.shard_optimizer");
  r.bucket_mb = c.get<double>("dist.bucket_mb");

  require(r.seq_len >= 2, "data.seq_len: must be >= 2");
  require(r.micro_batch >= 1, "batch.micro_batch: must be >= 1");
  require(r.grad_accum >= 1, "batch.grad_accum: must be >= 1");
  require(r.top_k >= 1, "loss.top_k: must be >= 1");
  require(r.temperature > 0, "loss.temperature: must be > 0");
  require(r.checkpoint_every >= 0, "checkpoint.every: must be >= 0");
  require(r.log_every >= 1, "run.log_every: must be >= 1");
  require(r.bucket_mb > 0 && r.bucket_numel() >= 1, "dist.bucket_mb: must be > 0");
  require(r.mixture.empty() != (r.synthetic_vocab == 0),
          "data: set exactly one of data.mixture (token shards) and data.synthetic_vocab (synthetic rows)");
  try {
    r.schedule.validate();
    r.student.validate(1);
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  return r;
}

}  // namespace xd::train

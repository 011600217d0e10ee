// The training loop: set-up of the stage's models, micro-batches with gradient
// accumulation, the one place where data parallelism reduces gradients, clipping,
// AdamW, metrics, checkpoints, and a clean stop on SIGINT/SIGTERM.
//
// Data parallelism (docs/cluster.md): every rank runs this loop on its own rows
// (rank r of W takes global rows r, r + W, ...), with the same micro-batch count,
// so all ranks issue the same collectives in the same order. Sharded
// (dist.shard_optimizer): gradients are reduce-scattered bucket by bucket during
// the backward pass and each rank steps its slice (dist::ShardedAdamW). Unsharded:
// the fp32 gradients are all-reduced after the last micro-batch and every rank runs
// the same AdamW. Rank 0 alone writes metrics, the progress bar and train.log.
#include "xdistill/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>

#include "session.h"
#include "xdistill/dist/grad_reducer.h"
#include "xdistill/runtime/device.h"
#include "xdistill/student/hybrid_mixer.h"
#include "xdistill/train/checkpoint_dirs.h"
#include "xdistill/train/losses.h"
#include "xdistill/train/metrics_log.h"
#include "xdistill/train/stop_signal.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"
#include "xdistill/util/progress.h"

namespace xd::train {
namespace stdfs = std::filesystem;

namespace {

at::ScalarType dtype_of(const std::string& name) { return name == "bf16" ? at::kBFloat16 : at::kFloat; }

void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters(true)) p.set_requires_grad(false);
}

void ensure_teacher(const TrainRecipe& r) {
  if (!r.teacher_random_shape.empty()) return;  // built in memory
  if (stdfs::exists(stdfs::path(r.teacher_path) / "config.json")) return;
  if (!r.create_tiny_teacher)
    throw UsageError("teacher.path: no config.json in '" + r.teacher_path +
                     "'; point it at a teacher checkpoint, or set teacher.create_tiny: true for a tiny random one");
  create_tiny_teacher(r.teacher_path, r.synthetic_vocab > 0 ? r.synthetic_vocab : 256, r.seed);
}

// teacher.path, or for benchmarks a random teacher of teacher.random_shape (the same
// weights on every rank and for every dtype: one seed, one device type).
std::shared_ptr<models::Decoder> load_teacher(const TrainRecipe& r, const at::Device& device, at::ScalarType dtype) {
  if (r.teacher_random_shape.empty()) return models::load_decoder(r.teacher_path, device, dtype);
  const models::ModelConfig config = models::parse_model_config(shape_config(r.teacher_random_shape), r.teacher_random_shape);
  auto teacher = std::make_shared<models::Decoder>(config, models::plan_from_config(config),
                                                   at::TensorOptions().device(device).dtype(dtype));
  // On a GPU drawn there: the CPU generator needs about a minute for 8B weights.
  init_random_weights(*teacher, r.seed, 0.02, /*draw_on_device=*/device.is_cuda());
  return teacher;
}

std::shared_ptr<student::StudentModel> make_student(const TrainSession& s, const models::Decoder* teacher) {
  const TrainRecipe& r = s.recipe;
  if (!r.student_init.empty()) {
    auto loaded = models::load_model(r.student_init, s.device.str(), s.compute_dtype);
    auto student = std::dynamic_pointer_cast<student::StudentModel>(loaded);
    XD_CHECK(student != nullptr, "student.init: '", r.student_init, "' is not a student (model_type ",
             student::kStudentModelType, ")");
    return student;
  }
  // Copy from a teacher in the compute dtype (load one if the online teacher's differs).
  std::shared_ptr<models::Decoder> source;
  if (!teacher || teacher->dtype() != s.compute_dtype) source = load_teacher(r, s.device, s.compute_dtype);
  return student::student_from_teacher(source ? *source : *teacher, r.student);
}

// Sharded: dist::ShardedAdamW (fp32 master weights, moments and gradient of this
// rank's slice only; it starts every rank from rank 0's weights). Unsharded:
// train::AdamW on every rank, after the same broadcast, so all ranks hold the same
// weights whatever their initialisation did.
void make_optimizer(TrainSession& s) {
  const TrainRecipe& r = s.recipe;
  if (r.sharded_optimizer(s.group->size())) {
    std::vector<dist::TrainedParam> params;
    for (const auto& [name, p] : s.trained) params.push_back({name, p, p.dim() >= 2});  // AdamW's decay rule
    dist::ShardingOptions sharding;
    sharding.bucket_numel = r.bucket_numel();
    s.sharded = std::make_unique<dist::ShardedAdamW>(
        std::move(params), s.group, dist::AdamWOptions{r.beta1, r.beta2, r.eps, r.weight_decay}, sharding);
    return;
  }
  if (s.group->size() > 1) {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : s.trained) {
      at::Tensor data = p.detach();
      s.group->broadcast(data, 0);
    }
  }
  AdamWOptions adam{r.beta1, r.beta2, r.eps, r.weight_decay, false};
  // fp32 buffers only where micro-batches are summed or ranks reduce them.
  adam.fp32_gradient_buffers = r.grad_accum > 1 || s.group->size() > 1;
  s.optimizer = std::make_unique<AdamW>(s.trained, adam);
}

int64_t trained_numel(const TrainSession& s) {
  if (s.optimizer) return s.optimizer->num_parameters();
  return s.sharded->layout().total_numel();
}

// After each micro-batch's backward: fp32 accumulation (sharded: the bucket
// reductions of this micro-batch are complete).
void accumulate_gradients(TrainSession& s) {
  if (s.sharded) s.sharded->finish_backward();
  else s.optimizer->accumulate_gradients();
}

// The single place where unsharded data parallelism reduces gradients: the fp32
// accumulation buffers, averaged over ranks in buckets. Sharded: already
// reduce-scattered during the backward passes.
void reduce_gradients(TrainSession& s) {
  if (s.sharded || s.group->size() == 1) return;
  dist::all_reduce_mean(*s.group, s.optimizer->gradients(), s.recipe.bucket_numel());
}

// The global gradient norm before clipping (sharded: the squares of every rank's
// slice summed over ranks), then AdamW.
double clip_and_step(TrainSession& s, double max_norm, double lr) {
  if (s.sharded) {
    const double norm = s.sharded->clip_grad_norm(max_norm);
    s.sharded->step(lr);
    return norm;
  }
  const double norm = s.optimizer->clip_grad_norm(max_norm);
  s.optimizer->step(lr);
  return norm;
}

// Models, trained parameters, optimizer and data of the recipe's stage.
void set_up(TrainSession& s, const config::Config& cfg) {
  s.recipe = recipe_from_config(cfg);
  s.resolved_config = cfg.dump();
  const TrainRecipe& r = s.recipe;
  // The launcher's ranks (RANK.. or SLURM_..), each on GPU LOCAL_RANK with NCCL, or
  // Gloo on CPUs; without a launcher a group of one.
  dist::DataParallel dp = dist::init_data_parallel(runtime::resolve_device(r.device));
  s.device = at::Device(dp.device);
  s.group = dp.group;
  s.compute_dtype = dtype_of(r.compute_dtype);
  torch::manual_seed(r.seed);
  student::register_student();
  // Rank 0 creates a tiny teacher if the recipe asks for one; the others wait for it.
  if (s.group->is_main()) ensure_teacher(r);
  s.group->barrier();
  ensure_teacher(r);

  const bool teacher_online = r.stage == Stage::Align || (r.stage == Stage::Distill && r.teacher_cache.empty());
  if (teacher_online) {
    s.teacher = load_teacher(r, s.device, dtype_of(r.teacher_dtype));
    freeze(*s.teacher);
  }
  if (r.stage == Stage::Distill && !r.teacher_cache.empty()) {
    s.cache = std::make_unique<TeacherCacheReader>(r.teacher_cache);
    const std::string cached_teacher = s.cache->meta().source.value("teacher", "");
    if (cached_teacher != r.teacher_path)
      log::warn("teacher.cache ", r.teacher_cache, " was written for teacher '", cached_teacher,
                "', the recipe names '", r.teacher_path, "'");
  }

  if (r.stage == Stage::Pretrain) {
    s.model = load_teacher(r, s.device, s.compute_dtype);
  } else {
    s.model = make_student(s, s.teacher.get());
  }
  s.model->train();
  for (const auto& item : s.model->named_parameters(true)) {
    // Stage I trains only the new parameters (method.md §3); the others stay bit-identical.
    const bool trained = r.stage != Stage::Align || student::is_new_parameter(item.key());
    item.value().set_requires_grad(trained);
    if (trained) s.trained.emplace_back(item.key(), item.value());
  }
  make_optimizer(s);
  s.data = make_batch_source(r, s.group->rank(), s.group->size());
}

void print_start_table(const TrainSession& s) {
  int64_t total = 0;
  for (const auto& p : s.model->parameters(true)) total += p.numel();
  const TrainRecipe& r = s.recipe;
  log::info("stage          ", to_string(r.stage), " (", r.name, ")");
  log::info("device         ", runtime::describe_device(s.device.str()));
  const bool in_place = s.optimizer && !s.optimizer->has_gradient_buffers();
  log::info("precision      compute ", r.compute_dtype, ", fp32 master weights, ",
            in_place ? "gradients in the model's dtype (one micro-batch, read in place by the CUDA AdamW)"
                     : "fp32 gradient accumulation",
            r.activation_checkpointing ? ", activation checkpointing" : "");
  log::info("parameters     ", total, " total, ", trained_numel(s), " trained");
  if (s.group->size() > 1)
    log::info("data parallel  ", s.group->size(), " ranks (", s.group->backend(), "), optimizer ",
              s.sharded ? "sharded (ZeRO-2: reduce-scatter, all-gather)" : "replicated (all-reduce)", ", buckets of ",
              r.bucket_mb, " MiB");
  log::info("teacher        ", s.teacher ? r.teacher_path + " (online, " + r.teacher_dtype + ")"
                                        : (s.cache ? "cache " + r.teacher_cache : std::string("none")));
  log::info("data           ", s.data->describe());
  log::info("tokens/step    ", r.tokens_per_step(s.group->size()), " (", s.group->size(), " ranks x ", r.micro_batch,
            " rows x ", r.grad_accum, " micro-batches x ", r.seq_len, ")");
  log::info("steps          ", r.schedule.total_steps, ", checkpoint every ", r.checkpoint_every, ", keep ",
            r.checkpoint_keep);
}

void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
}

struct StepRecord {
  double loss = 0, ce = 0, kl = 0, align = 0;
  bool has_ce = false, has_kl = false, has_align = false;
  int64_t tokens = 0;
};

// Gradient-accumulated step: micro-batches, reduction, clipping, AdamW. The record
// describes the global batch: loss parts averaged over ranks, tokens summed.
nlohmann::json train_one_step(TrainSession& s, double flops_token) {
  const TrainRecipe& r = s.recipe;
  const auto start = std::chrono::steady_clock::now();
  at::Tensor loss, ce, kl, align;
  auto add = [](at::Tensor& sum, const at::Tensor& part) {
    if (part.defined()) sum = sum.defined() ? sum + part : part;
  };
  int64_t tokens = 0;
  for (int64_t micro = 0; micro < r.grad_accum; ++micro) {
    const data::Batch batch = s.data->next(r.micro_batch);
    const MicroLosses m = run_micro_batch(s, batch, 1.0 / static_cast<double>(r.grad_accum));
    accumulate_gradients(s);
    add(loss, m.total), add(ce, m.ce), add(kl, m.kl), add(align, m.align);
    tokens += batch.rows * batch.seq_len;
  }
  reduce_gradients(s);
  const double lr = r.schedule.at(s.step);
  const double grad_norm = clip_and_step(s, r.grad_clip, lr);
  ++s.step;
  auto value = [](const at::Tensor& t) { return t.defined() ? t.item<double>() : 0.0; };
  const std::vector<double> sums = s.group->all_reduce_sum(
      std::vector<double>{value(loss), value(ce), value(kl), value(align), static_cast<double>(tokens)});
  const double peak = s.group->all_reduce_max(static_cast<double>(peak_memory_bytes(s.device)));
  synchronize(s.device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double world = static_cast<double>(s.group->size());
  const double n = static_cast<double>(r.grad_accum) * world;
  nlohmann::json rec = {{"step", s.step}, {"loss", sums[0] / n}};
  if (ce.defined()) rec["loss_ce"] = sums[1] / n;
  if (kl.defined()) rec["loss_kl"] = sums[2] / n;
  if (align.defined()) rec["loss_align"] = sums[3] / n;
  const double tokens_per_s = sums[4] / seconds;
  rec["lr"] = lr;
  rec["grad_norm"] = grad_norm;
  rec["tokens"] = static_cast<int64_t>(sums[4]);
  rec["step_seconds"] = seconds;
  rec["tokens_per_s"] = tokens_per_s;  // all ranks together
  rec["mfu"] = tokens_per_s / world * flops_token / (r.peak_tflops * 1e12);  // per device
  rec["peak_memory_gib"] = peak / (1024.0 * 1024.0 * 1024.0);  // the largest of any rank
  if (s.group->size() > 1) rec["ranks"] = s.group->size();
  return rec;
}

// Writes a checkpoint (all ranks together) and logs where, and how long it took.
void checkpoint(const TrainSession& s) {
  const auto start = std::chrono::steady_clock::now();
  const std::string path = save_training_checkpoint(s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char took[32];
  std::snprintf(took, sizeof took, "%.1f", seconds);
  log::info("checkpoint ", path, " written in ", took, " s");
}

// Rank 0 logs everything to RUN_DIR/train.log; the other ranks only warnings and
// errors, to the terminal and to RUN_DIR/train.rank<N>.log. Restores the level.
class RankLogging {
 public:
  RankLogging(const std::string& run_dir, int rank) : previous_(log::level()) {
    if (rank != 0 && previous_ < log::Level::warn) log::set_level(log::Level::warn);
    const std::string name = rank == 0 ? "train.log" : "train.rank" + std::to_string(rank) + ".log";
    file_.emplace((stdfs::path(run_dir) / name).string());
  }
  ~RankLogging() { log::set_level(previous_); }

 private:
  log::Level previous_;
  std::optional<log::ScopedLogFile> file_;
};

// Whether to stop after this step, the same answer on every rank: a signal that any
// rank received (its number, else 0), or the step budget of this invocation.
struct StopDecision {
  int signal = 0;
  bool budget = false;
  bool any() const { return signal != 0 || budget; }
};
StopDecision agree_on_stop(TrainSession& s, const StopSignal& stop, int64_t first_step) {
  StopDecision d;
  d.signal = static_cast<int>(s.group->all_reduce_max(static_cast<double>(stop.signal_number())));
  d.budget = s.recipe.stop_after_steps > 0 && s.step - first_step >= s.recipe.stop_after_steps;
  return d;
}

}  // namespace

int run_training(const config::Config& cfg, bool resume) {
  TrainSession s;
  set_up(s, cfg);
  const TrainRecipe& r = s.recipe;
  const bool main_rank = s.group->is_main();
  stdfs::create_directories(r.run_dir);
  RankLogging rank_logging(r.run_dir, s.group->rank());
  if (resume) {
    if (!restore_training_checkpoint(s)) log::warn("--resume: no checkpoint in ", r.run_dir, "; starting afresh");
  } else if (CheckpointDirs(r.run_dir).latest()) {
    throw UsageError("run.dir '" + r.run_dir + "' already holds checkpoints; pass --resume to continue the run, " +
                     "or choose another run.dir");
  }
  if (main_rank) fs::write_atomic(stdfs::path(r.run_dir) / "recipe.resolved.yaml", s.resolved_config);
  print_start_table(s);
  std::optional<MetricsLog> metrics;
  if (main_rank) metrics.emplace((stdfs::path(r.run_dir) / "metrics.jsonl").string(), resume ? s.step + 1 : -1);
  const double flops_token = flops_per_token(s);

  StopSignal stop;
  std::optional<Progress> progress;
  if (main_rank) {
    progress.emplace("train", r.schedule.total_steps, "step", 10.0);
    progress->resume_from(s.step);  // steps of an earlier run count towards the total, not the rate
  }
  int64_t last_saved = s.step;
  const int64_t first_step = s.step;
  while (s.step < r.schedule.total_steps) {
    const nlohmann::json rec = train_one_step(s, flops_token);
    if (main_rank) {
      metrics->write(rec);
      progress->set(s.step);
      char postfix[96];
      std::snprintf(postfix, sizeof postfix, "loss %.4g lr %.3g %.0f tok/s", rec["loss"].get<double>(),
                    rec["lr"].get<double>(), rec["tokens_per_s"].get<double>());
      progress->set_postfix(postfix);
    }
    if (s.step % r.log_every == 0 || s.step == r.schedule.total_steps) log::info("step ", s.step, ": ", rec.dump());
    if (r.checkpoint_every > 0 && (s.step % r.checkpoint_every == 0 || s.step == r.schedule.total_steps)) {
      checkpoint(s);
      last_saved = s.step;
    }
    const StopDecision decision = agree_on_stop(s, stop, first_step);
    if (decision.any() && s.step < r.schedule.total_steps) {
      if (last_saved != s.step) checkpoint(s);
      if (progress) progress->finish();
      if (decision.signal == 0) {
        log::info("stopped after ", r.stop_after_steps, " steps (run.stop_after_steps); continue with --resume");
        return 0;
      }
      log::warn("stopped by signal ", decision.signal, " after step ", s.step, "; continue with --resume");
      return 128 + decision.signal;
    }
  }
  if (progress) progress->finish();
  const std::string final_dir = r.output;
  if (main_rank) models::save_model(*s.model, final_dir);
  s.group->barrier();  // every rank returns once the final model is in place
  log::info("done: ", s.step, " steps; final model in ", final_dir);
  return 0;
}

void write_teacher_cache(const config::Config& cfg, const std::string& out, int64_t rows) {
  TrainRecipe r = recipe_from_config(cfg);
  const std::string dest = out.empty() ? r.teacher_cache : out;
  if (dest.empty()) throw UsageError("teacher-cache: give --out DIR or set teacher.cache in the recipe");
  const at::Device device(runtime::resolve_device(r.device));
  ensure_teacher(r);
  auto teacher = models::load_decoder(r.teacher_path, device, dtype_of(r.teacher_dtype));
  freeze(*teacher);
  auto data = make_batch_source(r, 0, 1);
  const int64_t total = rows > 0 ? rows : r.schedule.total_steps * r.grad_accum * r.micro_batch;
  TeacherCacheMeta meta;
  meta.seq_len = r.seq_len;
  meta.top_k = r.top_k;
  meta.logprob_dtype = "f32";
  meta.source = {{"teacher", r.teacher_path}, {"teacher_dtype", r.teacher_dtype}, {"data", data->describe()},
                 {"seed", r.seed}, {"micro_batch", r.micro_batch}};
  TeacherCacheWriter writer(dest, meta);
  Progress progress("teacher-cache", total, "row");
  std::set<int64_t> seen;
  torch::NoGradGuard no_grad;
  // The same micro-batches as the training run, so the teacher computes each row
  // exactly as it would online.
  for (int64_t done = 0; done < total; done += r.micro_batch) {
    const data::Batch batch = data->next(r.micro_batch);
    auto [ids, logprobs] = teacher_top_k(teacher->forward(batch_tensor(batch.inputs, batch, device)), r.top_k);
    const at::Tensor ids32 = ids.to(at::kCPU, at::kInt).contiguous();
    const at::Tensor lp = logprobs.to(at::kCPU, at::kFloat).contiguous();
    for (int64_t row = 0; row < batch.rows; ++row) {
      TopkRow out_row;
      out_row.row_id = row_key(batch, row);
      if (!seen.insert(out_row.row_id).second) continue;  // the same row again: same teacher output
      const int64_t n = r.seq_len * r.top_k;
      const int32_t* id_ptr = ids32[row].data_ptr<int32_t>();
      const float* lp_ptr = lp[row].data_ptr<float>();
      out_row.ids.assign(id_ptr, id_ptr + n);
      out_row.logprobs.assign(lp_ptr, lp_ptr + n);
      writer.add(out_row);
    }
    progress.advance(batch.rows);
  }
  writer.finish();
  progress.finish();
  log::info("teacher cache: ", seen.size(), " rows of top-", r.top_k, " written to ", dest);
}

}  // namespace xd::train

// The training loop: set-up of the stage's models, micro-batches with gradient
// accumulation, the one place where data parallelism reduces gradients, clipping,
// AdamW, metrics, checkpoints, and a clean stop on SIGINT/SIGTERM.
#include "xdistill/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "session.h"
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
  if (stdfs::exists(stdfs::path(r.teacher_path) / "config.json")) return;
  if (!r.create_tiny_teacher)
    throw UsageError("teacher.path: no config.json in '" + r.teacher_path +
                     "'; point it at a teacher checkpoint, or set teacher.create_tiny: true for a tiny random one");
  create_tiny_teacher(r.teacher_path, r.synthetic_vocab > 0 ? r.synthetic_vocab : 256, r.seed);
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
  if (!teacher || teacher->dtype() != s.compute_dtype)
    source = models::load_decoder(r.teacher_path, s.device, s.compute_dtype);
  return student::student_from_teacher(source ? *source : *teacher, r.student);
}

// Models, trained parameters, optimizer and data of the recipe's stage.
void set_up(TrainSession& s, const config::Config& cfg) {
  s.recipe = recipe_from_config(cfg);
  s.resolved_config = cfg.dump();
  const TrainRecipe& r = s.recipe;
  s.device = at::Device(runtime::resolve_device(r.device));
  s.compute_dtype = dtype_of(r.compute_dtype);
  torch::manual_seed(r.seed);
  student::register_student();
  ensure_teacher(r);

  const bool teacher_online = r.stage == Stage::Align || (r.stage == Stage::Distill && r.teacher_cache.empty());
  if (teacher_online) {
    s.teacher = models::load_decoder(r.teacher_path, s.device, dtype_of(r.teacher_dtype));
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
    s.model = models::load_decoder(r.teacher_path, s.device, s.compute_dtype);
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
  s.optimizer = std::make_unique<AdamW>(s.trained, AdamWOptions{r.beta1, r.beta2, r.eps, r.weight_decay, false});
  s.data = make_batch_source(r, /*rank=*/0, /*world=*/1);
}

// The single place where data-parallel training reduces gradients (all-reduce /
// reduce-scatter of the fp32 accumulation buffers, averaged over ranks). One
// process: nothing to do.
void reduce_gradients(std::vector<at::Tensor>& /*fp32_gradients*/) {}

void print_start_table(const TrainSession& s) {
  int64_t total = 0;
  for (const auto& p : s.model->parameters(true)) total += p.numel();
  const TrainRecipe& r = s.recipe;
  log::info("stage          ", to_string(r.stage), " (", r.name, ")");
  log::info("device         ", runtime::describe_device(s.device.str()));
  log::info("precision      compute ", r.compute_dtype, ", fp32 master weights and gradients",
            r.activation_checkpointing ? ", activation checkpointing" : "");
  log::info("parameters     ", total, " total, ", s.optimizer->num_parameters(), " trained");
  log::info("teacher        ", s.teacher ? r.teacher_path + " (online, " + r.teacher_dtype + ")"
                                        : (s.cache ? "cache " + r.teacher_cache : std::string("none")));
  log::info("data           ", s.data->describe());
  log::info("tokens/step    ", r.tokens_per_step(), " (", r.micro_batch, " rows x ", r.grad_accum, " micro-batches x ",
            r.seq_len, ")");
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

// Gradient-accumulated step: micro-batches, reduction, clipping, AdamW.
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
    s.optimizer->accumulate_gradients();
    add(loss, m.total), add(ce, m.ce), add(kl, m.kl), add(align, m.align);
    tokens += batch.rows * batch.seq_len;
  }
  reduce_gradients(s.optimizer->gradients());
  const double grad_norm = s.optimizer->clip_grad_norm(r.grad_clip);
  const double lr = r.schedule.at(s.step);
  s.optimizer->step(lr);
  ++s.step;
  synchronize(s.device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double n = static_cast<double>(r.grad_accum);
  nlohmann::json rec = {{"step", s.step}, {"loss", loss.item<double>() / n}};
  if (ce.defined()) rec["loss_ce"] = ce.item<double>() / n;
  if (kl.defined()) rec["loss_kl"] = kl.item<double>() / n;
  if (align.defined()) rec["loss_align"] = align.item<double>() / n;
  const double tokens_per_s = static_cast<double>(tokens) / seconds;
  rec["lr"] = lr;
  rec["grad_norm"] = grad_norm;
  rec["tokens"] = tokens;
  rec["step_seconds"] = seconds;
  rec["tokens_per_s"] = tokens_per_s;
  rec["mfu"] = tokens_per_s * flops_token / (r.peak_tflops * 1e12);
  rec["peak_memory_gib"] = static_cast<double>(peak_memory_bytes(s.device)) / (1024.0 * 1024.0 * 1024.0);
  return rec;
}

}  // namespace

int run_training(const config::Config& cfg, bool resume) {
  TrainSession s;
  set_up(s, cfg);
  const TrainRecipe& r = s.recipe;
  stdfs::create_directories(r.run_dir);
  log::ScopedLogFile run_log((stdfs::path(r.run_dir) / "train.log").string());
  if (resume) {
    if (!restore_training_checkpoint(s)) log::warn("--resume: no checkpoint in ", r.run_dir, "; starting afresh");
  } else if (CheckpointDirs(r.run_dir).latest()) {
    throw UsageError("run.dir '" + r.run_dir + "' already holds checkpoints; pass --resume to continue the run, " +
                     "or choose another run.dir");
  }
  fs::write_atomic(stdfs::path(r.run_dir) / "recipe.resolved.yaml", s.resolved_config);
  print_start_table(s);
  MetricsLog metrics((stdfs::path(r.run_dir) / "metrics.jsonl").string(), resume ? s.step + 1 : -1);
  const double flops_token = flops_per_token(s);

  StopSignal stop;
  Progress progress("train", r.schedule.total_steps, "step", 10.0);
  progress.resume_from(s.step);  // steps of an earlier run count towards the total, not the rate
  int64_t last_saved = s.step;
  const int64_t first_step = s.step;
  while (s.step < r.schedule.total_steps) {
    const nlohmann::json rec = train_one_step(s, flops_token);
    metrics.write(rec);
    progress.set(s.step);
    char postfix[96];
    std::snprintf(postfix, sizeof postfix, "loss %.4g lr %.3g %.0f tok/s", rec["loss"].get<double>(),
                  rec["lr"].get<double>(), rec["tokens_per_s"].get<double>());
    progress.set_postfix(postfix);
    if (s.step % r.log_every == 0 || s.step == r.schedule.total_steps) log::info("step ", s.step, ": ", rec.dump());
    if (s.step % r.checkpoint_every == 0 || s.step == r.schedule.total_steps) {
      log::info("checkpoint ", save_training_checkpoint(s));
      last_saved = s.step;
    }
    const bool time_is_up = r.stop_after_steps > 0 && s.step - first_step >= r.stop_after_steps;
    if ((stop.requested() || time_is_up) && s.step < r.schedule.total_steps) {
      if (last_saved != s.step) log::info("checkpoint ", save_training_checkpoint(s));
      progress.finish();
      if (!stop.requested()) {
        log::info("stopped after ", r.stop_after_steps, " steps (run.stop_after_steps); continue with --resume");
        return 0;
      }
      log::warn("stopped by signal ", stop.signal_number(), " after step ", s.step, "; continue with --resume");
      return 128 + stop.signal_number();
    }
  }
  progress.finish();
  const std::string final_dir = r.output;
  models::save_model(*s.model, final_dir);
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

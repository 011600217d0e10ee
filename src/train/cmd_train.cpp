// `xdistill train | teacher-cache | plot | bench-train`: options only; the work is
// in src/train/ (trainer.h, loss_plot.h).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "xdistill/cli/commands.h"
#include "xdistill/student/register.h"
#include "xdistill/train/loss_plot.h"
#include "xdistill/train/options.h"
#include "xdistill/train/trainer.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::cli {
namespace {

void add_teacher_cache(CLI::App& app) {
  auto args = std::make_shared<RecipeArgs>();
  auto out = std::make_shared<std::string>();
  auto rows = std::make_shared<int64_t>(0);
  auto* cmd = app.add_subcommand("teacher-cache",
                                 "run a train recipe's teacher once over its rows and store the top-k "
                                 "(ids + log-probs, zstd) for Stage II runs with teacher.cache");
  add_recipe_options(*cmd, *args);
  cmd->add_option("--out", *out, "cache directory (default: the recipe's teacher.cache)");
  cmd->add_option("--rows", *rows, "rows to cache (default: what the recipe's run visits)");
  cmd->callback([args, out, rows] {
    auto cfg = config::Config::load(train::recipe_schema(), args->files, args->overrides);
    cfg.check_required();
    train::write_teacher_cache(cfg, *out, *rows);
  });
}

void add_plot(CLI::App& app) {
  auto* plot = app.add_subcommand("plot", "render plots of a run as SVG");
  plot->require_subcommand(1);
  auto run_dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>("loss.svg");
  auto log_y = std::make_shared<bool>(false);
  auto* loss = plot->add_subcommand("loss", "the loss parts of RUN_DIR/metrics.jsonl against the step");
  loss->add_option("run_dir", *run_dir, "run directory (or a metrics.jsonl file)")->required();
  loss->add_option("--out", *out, "SVG file to write")->capture_default_str();
  loss->add_flag("--log-y", *log_y, "logarithmic loss axis");
  loss->callback([run_dir, out, log_y] {
    std::filesystem::path metrics(*run_dir);
    if (std::filesystem::is_directory(metrics)) metrics /= "metrics.jsonl";
    const auto series = train::loss_series(metrics.string());
    fs::write_atomic(*out, train::render_svg_plot(series, "loss: " + *run_dir, "step", "loss", *log_y));
    log::info("wrote ", *out);
  });
}

void add_bench_train(CLI::App& app) {
  auto b = std::make_shared<train::TrainBenchmark>();
  auto no_ckpt = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("bench-train",
                                 "time training steps on random-weight models of a named shape (no checkpoint needed)");
  cmd->add_option("--stage", b->stage, "align (Stage I) | distill (Stage II)")->capture_default_str();
  cmd->add_option("--shape", b->shape, "llama-8b | llama-3b | tiny")->capture_default_str();
  cmd->add_option("--batch", b->batch, "rows per step")->capture_default_str();
  cmd->add_option("--seq", b->seq, "sequence length")->capture_default_str();
  cmd->add_option("--steps", b->steps, "timed steps")->capture_default_str();
  cmd->add_option("--warmup", b->warmup, "untimed steps first")->capture_default_str();
  cmd->add_option("--device", b->device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--peak-tflops", b->peak_tflops, "peak dense bf16 TFLOP/s for MFU")->capture_default_str();
  cmd->add_flag("--no-activation-checkpointing", *no_ckpt, "Stage II without recomputing layers");
  cmd->add_option("--chunk-size", b->chunk_size, "the student's mLSTM chunk, 64 or 128 (default: the recipe's)")
      ->check(CLI::IsMember({64, 128}));
  cmd->add_option("--profile", b->profile_top,
                  "after the timed steps, profile one step and print its N most expensive GPU kernels")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([b, no_ckpt] {
    b->activation_checkpointing = !*no_ckpt;
    train::run_train_benchmark(*b);
  });
}

}  // namespace

void add_train_command(CLI::App& app) {
  student::register_student();  // every command's load_model then accepts students
  auto args = std::make_shared<RecipeArgs>();
  auto resume = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("train", "train a student (Stage I align, Stage II distill) or a teacher (pretrain)");
  add_recipe_options(*cmd, *args);
  cmd->add_flag("--resume", *resume, "continue from the newest checkpoint of run.dir");
  cmd->callback([args, resume] {
    auto cfg = config::Config::load(train::recipe_schema(), args->files, args->overrides);
    cfg.check_required();
    const int rc = train::run_training(cfg, *resume);
    if (rc != 0) {  // stopped by a signal, after its checkpoint: exit with 128 + signal
      std::fflush(nullptr);
      std::exit(rc);
    }
  });
  add_teacher_cache(app);
  add_plot(app);
  add_bench_train(app);
}

}  // namespace xd::cli

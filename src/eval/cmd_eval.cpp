// `xdistill eval run`: score a model on task definitions (YAML + local JSONL).
// `xdistill eval compare`: win-and-tie of students against a teacher (method.md §4).
#include <memory>

#include "xdistill/cli/commands.h"
#include "xdistill/eval/compare.h"
#include "xdistill/eval/run.h"
#include "xdistill/util/error.h"

namespace xd::cli {
namespace {

void add_compare(CLI::App& eval) {
  auto args = std::make_shared<eval::CompareCommand>();
  auto* cmd = eval.add_subcommand(
      "compare", "win-and-tie of students against a teacher: recovery, C_alpha curve, alpha*; reads "
                 "xdistill and lm-evaluation-harness results files");
  cmd->add_option("--teacher", args->teacher, "teacher results file (JSON)")->required();
  cmd->add_option("--student", args->students, "student results file; repeat for several students")->required();
  cmd->add_option("--alpha-max", args->options.alpha_max, "largest tolerance shown in the curve and plot")
      ->capture_default_str();
  cmd->add_option("--metric", args->metric_specs,
                  "metric per task: TASK=METRIC[,FILTER] (e.g. gsm8k=exact_match,flexible-extract), or "
                  "METRIC[,FILTER] for every task; default: acc_norm, acc, exact_match (strict-match), ...");
  cmd->add_option("--benchmarks", args->options.benchmarks,
                  "compare only these tasks (may name subtasks); default: every top-level task")
      ->delimiter(',');
  cmd->add_option("--bootstrap", args->options.bootstrap_replicates,
                  "paired bootstrap replicates where both files have per-sample records (0 = off)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", args->options.seed, "bootstrap seed")->capture_default_str();
  cmd->add_option("--ci-level", args->options.ci_level, "confidence level of the bootstrap intervals")
      ->capture_default_str()->check(CLI::Range(0.5, 0.999));
  cmd->add_option("--plot", args->plot, "write the C_alpha plot: out.svg, or out.png (needs rsvg-convert)");
  cmd->add_option("--out", args->out_json, "write the JSON report (alpha_star per student, curve, CIs)");
  cmd->callback([args] { eval::run_compare_command(*args); });
}

void add_run(CLI::App& eval) {
  auto args = std::make_shared<eval::RunCommand>();
  auto* cmd = eval.add_subcommand("run", "score a model (teacher or student) on task definitions");
  cmd->add_option("--model", args->model_dir, "model directory (config.json, safetensors, tokenizer)")->required();
  cmd->add_option("--tasks", args->task_files, "task YAML files (or directories of them)")->required();
  cmd->add_option("--out", args->out, "results file to write (JSON, lm-evaluation-harness layout)")->required();
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "compute dtype: f32, bf16, or auto (bf16 on CUDA, f32 on CPU)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "sequences per forward pass, or auto")->capture_default_str();
  auto limit = std::make_shared<int64_t>(0);
  cmd->add_option("--limit", *limit, "score at most this many documents per task (overrides the task's limit)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tokenizer", args->tokenizer_dir, "tokenizer directory (default: the model directory)");
  cmd->add_flag("--add-bos", args->add_bos,
                "prepend BOS to every text (off by default, as lm-evaluation-harness's HF backend)");
  cmd->callback([args, limit] {
    if (*limit > 0) args->limit = *limit;
    eval::run_eval_command(*args);
  });
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "score models on tasks; compare student and teacher (win-and-tie)");
  cmd->require_subcommand(1);
  add_run(*cmd);
  add_compare(*cmd);
  add_niah_command(*cmd);  // src/infer/cmd_infer.cpp
}

}  // namespace xd::cli

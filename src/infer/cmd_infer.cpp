// `xdistill bench inference` and `xdistill eval niah`: options only; the work is in
// src/infer (bench_inference.cpp, niah_run.cpp).
#include <memory>

#include "xdistill/cli/commands.h"
#include "xdistill/infer/bench.h"
#include "xdistill/infer/niah_run.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "benchmarks of inference");
  bench->require_subcommand(1);
  auto args = std::make_shared<infer::BenchInferenceCommand>();
  auto* cmd = bench->add_subcommand(
      "inference", "time to first token, prefill and decode tokens/s, peak GPU memory of teachers and students");
  cmd->add_option("--model", args->models, "model directory (teacher or student); give a teacher and its student to "
                                           "see their ratios");
  cmd->add_option("--shape", args->shape,
                  "random weights instead: llama-3.1-8b, llama-3.2-1b or tiny (a teacher and its student)");
  cmd->add_option("--batch", args->batches, "batch sizes")->delimiter(',')->capture_default_str();
  cmd->add_option("--context", args->contexts, "prompt lengths: a list (1k,4k,16k) or a doubling range (1k..128k)")
      ->capture_default_str();
  cmd->add_option("--gen", args->gen, "new tokens per row")->capture_default_str();
  cmd->add_option("--prefill-chunk", args->prefill_chunk, "prompt tokens per forward (0 = whole prompt)")
      ->capture_default_str();
  cmd->add_flag("!--no-cuda-graph", args->cuda_graph, "decode eagerly instead of replaying a CUDA graph");
  cmd->add_flag("!--no-fused-step", args->fused_step,
                "decode with ATen operations instead of the fused step kernels (mixer, norms, SiLU * up)");
  cmd->add_flag("--profile-kernels", args->profile_kernels,
                "print the GPU time of prefill and of a decode step kernel by kernel (CUDA; the timings then "
                "include the profiler's cost)");
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "f32, bf16 or auto (bf16 on CUDA)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))->capture_default_str();
  cmd->add_option("--out", args->out, "write the results as JSON lines");
  cmd->add_option("--plot", args->plot, "write an SVG plot of throughput against context");
  cmd->add_option("--seed", args->seed, "seed of the random weights and prompts")->capture_default_str();
  cmd->callback([args] { infer::run_bench_inference(*args); });
}

void add_niah_command(CLI::App& eval) {
  auto args = std::make_shared<infer::NiahCommand>();
  auto* cmd = eval.add_subcommand(
      "niah", "needle in a haystack (single and multi-needle) on synthetic haystacks; exact match per context");
  cmd->add_option("--model", args->models, "model directory; repeat for a teacher and its students")->required();
  cmd->add_option("--tokenizer", args->tokenizer_dir, "tokenizer directory (default: the first model's)");
  cmd->add_option("--contexts", args->options.contexts, "haystack lengths in tokens")->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--needles", args->options.needles, "needle counts: 1 = single, n > 1 = n needles, one asked")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--samples", args->options.samples, "haystacks per context and needle count (depths 0..1)")
      ->capture_default_str();
  cmd->add_option("--seed", args->options.seed, "haystack seed")->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "haystacks decoded together")->capture_default_str();
  cmd->add_option("--max-new", args->max_new_tokens, "tokens generated per answer")->capture_default_str();
  cmd->add_option("--prefill-chunk", args->prefill_chunk, "prompt tokens per forward")->capture_default_str();
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or auto")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "f32, bf16 or auto (bf16 on CUDA)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))->capture_default_str();
  cmd->add_option("--out", args->out, "write the JSON report");
  cmd->callback([args] { infer::run_niah_command(*args); });
}

}  // namespace xd::cli

// `xdistill bench inference` (torch-free parts: the command's settings, one result
// per setting, the printed table with student/teacher ratios, JSON lines and the
// SVG plot).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace xd::infer {

struct BenchInferenceCommand {
  std::vector<std::string> models;  // model directories (a teacher and its student, or one)
  std::string shape;                // or random weights of a named shape: teacher + student built from it
  std::vector<int64_t> batches = {1, 4, 8};
  std::string contexts = "1k,4k,16k";  // list "1k,4k" or doubling range "1k..128k"
  int64_t gen = 100;
  int64_t prefill_chunk = 4096;
  bool cuda_graph = true;
  bool fused_step = true;
  bool profile_kernels = false;     // print where the GPU time of prefill and decode goes
  std::string device = "auto", dtype = "auto";
  std::string out, plot;            // JSON lines; SVG plot
  uint64_t seed = 1;
};

struct BenchResult {
  std::string model;   // label (directory name, or "teacher"/"student" for --shape)
  std::string kind;    // "teacher" or "student"
  int64_t batch = 0, context = 0, gen = 0;
  std::string status = "ok";  // ok | oom | error: <message>
  double ttft_s = 0, prefill_tok_s = 0, decode_tok_s = 0;
  int64_t peak_bytes = 0;   // peak GPU memory allocated during the setting (weights included)
  int64_t extra_bytes = 0;  // that peak less what was allocated before (the weights): caches, activations
  bool cuda_graph = false;
  bool fused_step = false;  // the decode step ran the fused kernels
  nlohmann::json to_json() const;
};

// "1k" -> 1024, "4096" -> 4096; "a..b" doubles from a to b; "a,b,c" a list.
std::vector<int64_t> parse_contexts(const std::string& text);
// One printed line per result; and, for each (batch, context) where a teacher and a
// student both ran, their ratios (student / teacher throughput, memory).
std::string format_results(const std::vector<BenchResult>& results);
// Decode and prefill throughput against context, a line per (model, batch).
std::string render_bench_svg(const std::vector<BenchResult>& results);

void run_bench_inference(const BenchInferenceCommand& command);  // bench_inference.cpp (torch)

}  // namespace xd::infer

// `xdistill eval run`: load the tasks (all validated before the model loads), the
// tokenizer and the model; score every task; write the results file atomically.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "xdistill/eval/evaluate.h"
#include "xdistill/eval/model_backend.h"
#include "xdistill/eval/run.h"
#include "xdistill/models/language_model.h"
#include "xdistill/runtime/device.h"
#include "xdistill/student/register.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::eval {
namespace {

int64_t parse_batch_size(const std::string& text) {
  if (text == "auto") return 0;
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw UsageError("--batch-size '" + text + "': expected a positive integer or 'auto'");
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void print_summary(const std::vector<TaskOutcome>& outcomes) {
  for (const auto& o : outcomes)
    for (const auto& [key, m] : o.metrics) {
      char line[256];
      std::snprintf(line, sizeof line, "%-28s %-28s %.6f", o.name.c_str(), key.c_str(), m.value);
      std::cout << line << (m.stderr_value ? " ± " + std::to_string(*m.stderr_value) : std::string()) << "\n";
    }
}

}  // namespace

void run_eval_command(const RunCommand& cmd) {
  const int64_t batch_size = parse_batch_size(cmd.batch_size);
  if (cmd.limit && *cmd.limit <= 0) throw UsageError("--limit must be > 0");
  std::vector<TaskSpec> tasks;
  for (const auto& path : expand_task_paths(cmd.task_files)) tasks.push_back(load_task(path));

  const std::string device = runtime::resolve_device(cmd.device);
  const std::string dtype_name = cmd.dtype != "auto" ? cmd.dtype : device.rfind("cuda", 0) == 0 ? "bf16" : "f32";
  const auto tokenizer = tok::Tokenizer::load(cmd.tokenizer_dir.empty() ? cmd.model_dir : cmd.tokenizer_dir);
  student::register_student();  // --model may be a teacher or a distilled student
  auto model = models::load_model(cmd.model_dir, device, models::parse_dtype_name(dtype_name));
  log::info("eval: ", runtime::describe_device(device), ", ", dtype_name, ", batch size ", cmd.batch_size, ", ",
            tasks.size(), " task(s)");

  ModelBackend backend(model, tokenizer, {batch_size, cmd.add_bos, 0});
  std::vector<TaskOutcome> outcomes;
  for (const auto& t : tasks) outcomes.push_back(evaluate_task(t, backend, cmd.limit));

  const nlohmann::json header = {
      {"version", XDISTILL_VERSION}, {"format_revision", 1},
      {"model", std::filesystem::path(cmd.model_dir).lexically_normal().filename().string()},
      {"model_path", cmd.model_dir}, {"model_type", model->config().model_type}, {"device", device},
      {"dtype", dtype_name}, {"batch_size", cmd.batch_size}, {"add_bos", cmd.add_bos},
      {"max_length", backend.max_length()}, {"tokenizer_fingerprint", tokenizer.fingerprint()}, {"date", utc_now()}};
  fs::write_atomic(cmd.out, results_json(tasks, outcomes, header).dump(2) + "\n");
  print_summary(outcomes);
  log::info("wrote ", cmd.out);
}

}  // namespace xd::eval

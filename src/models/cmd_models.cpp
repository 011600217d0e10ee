// `xdistill info | logits | generate`: options only; the work is in src/models/.
#include "xdistill/cli/commands.h"
#include "xdistill/models/model_tasks.h"
#include "xdistill/util/error.h"

namespace xd::cli {
namespace {

void add_model_options(CLI::App* cmd, std::string& model, std::string& dtype, std::string& device) {
  cmd->add_option("--model", model, "model directory (config.json + safetensors)")->required();
  cmd->add_option("--dtype", dtype, "compute dtype: f32 | bf16")->capture_default_str();
  cmd->add_option("--device", device, "auto | cpu | cuda | cuda:N")->capture_default_str();
}

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "describe a model: family, parameters, layers, heads, dtype, memory to load");
  auto req = std::make_shared<models::InfoRequest>();
  cmd->add_option("--model", req->model, "model directory (config.json + safetensors)")->required();
  cmd->add_option("--dtype", req->dtype, "estimate the memory to load in this dtype (f32 | bf16); default: as stored");
  cmd->callback([req] { models::print_model_info(*req); });
}

void add_logits(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "logits", "write float32 logits for token sequences: one tensor logits.<i> [T_i, vocab] per line of --tokens");
  auto req = std::make_shared<models::LogitsRequest>();
  add_model_options(cmd, req->model, req->dtype, req->device);
  cmd->add_option("--tokens", req->tokens, "file with one sequence of whitespace-separated token ids per line")
      ->required();
  cmd->add_option("--out", req->out, "output .safetensors file")->required();
  cmd->add_flag("--time", req->time, "log each forward's wall time (\"forward: T tokens in X ms\")");
  cmd->callback([req] { models::write_logits(*req); });
}

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "continue token sequences; prints the new ids, one line per input line");
  auto req = std::make_shared<models::GenerateRequest>();
  add_model_options(cmd, req->model, req->dtype, req->device);
  cmd->add_option("--tokens", req->tokens, "file with one prompt of whitespace-separated token ids per line")
      ->required();
  auto& o = req->options;
  cmd->add_option("--max-new", o.max_new_tokens, "new tokens per prompt at most")->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "0 = greedy; > 0 samples")->capture_default_str();
  cmd->add_option("--top-p", o.top_p, "nucleus sampling mass in (0, 1]")->capture_default_str();
  cmd->add_option("--seed", o.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", o.stop_ids, "stop token id (repeatable); the model's eos ids are added")->expected(1, -1);
  cmd->add_flag("!--ignore-eos", req->use_model_stop_ids, "do not stop at the model's eos ids");
  cmd->add_option("--batch", o.batch_size, "prompts of equal length decoded together")->capture_default_str();
  cmd->callback([req] {
    if (req->options.max_new_tokens < 0) throw UsageError("--max-new must be >= 0");
    if (req->options.top_p <= 0 || req->options.top_p > 1) throw UsageError("--top-p must be in (0, 1]");
    if (req->options.temperature < 0) throw UsageError("--temperature must be >= 0");
    models::print_generations(*req);
  });
}

}  // namespace

void add_model_commands(CLI::App& app) {
  add_info(app);
  add_logits(app);
  add_generate(app);
}

}  // namespace xd::cli

// `xdistill tokenizer encode|decode|chat|info`: options only; the work is in
// src/tokenizer/jsonl_files.cpp. External parity scripts call encode and
// decode, so their options and file formats stay stable.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "tokenizer/jsonl_files.h"
#include "xdistill/cli/commands.h"
#include "xdistill/tokenizer/chat_template.h"
#include "xdistill/tokenizer/tokenizer.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::cli {
namespace {

struct TokenizerArgs {
  std::string tokenizer, input, output, format;
  bool no_special = false, skip_special = false, generation_prompt = false;
  int threads = 0;
};

void report(const char* what, const tok::JsonlStats& s) {
  const double mb = double(s.text_bytes) / 1e6;
  // A fixed format that tools/bench_tokenizer.py parses.
  log::info("tokenizer ", what, ": ", s.lines, " lines, ", mb, " MB of text, ", what, " ", s.codec_seconds,
            " s wall (", s.codec_seconds > 0 ? mb / s.codec_seconds : 0.0, " MB/s), ", s.codec_cpu_seconds,
            " s cpu, total ", s.total_seconds, " s");
}

void add_io_options(CLI::App* cmd, TokenizerArgs& a) {
  cmd->add_option("--tokenizer", a.tokenizer, "directory with tokenizer.json (+ tokenizer_config.json)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--input", a.input, "input JSON-lines file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output, "output JSON-lines file (written atomically)")->required();
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "encode and decode with a Hugging Face tokenizer.json");
  cmd->require_subcommand(1);
  auto args = std::make_shared<TokenizerArgs>();

  auto* encode = cmd->add_subcommand("encode", "{\"text\": ...} lines -> {\"ids\": [...]} lines");
  add_io_options(encode, *args);
  encode->add_flag("--no-special", args->no_special, "do not add the post-processor's special tokens (e.g. BOS)");
  encode->add_option("--threads", args->threads, "encoding threads (0 = all cores)")->capture_default_str();
  encode->callback([args] {
    const auto tokenizer = tok::Tokenizer::load(args->tokenizer);
    report("encode", tok::encode_jsonl(tokenizer, args->input, args->output, !args->no_special, args->threads));
  });

  auto* decode = cmd->add_subcommand("decode", "{\"ids\": [...]} lines -> {\"text\": ...} lines");
  add_io_options(decode, *args);
  decode->add_flag("--skip-special-tokens", args->skip_special, "leave special tokens out of the text");
  decode->callback([args] {
    const auto tokenizer = tok::Tokenizer::load(args->tokenizer);
    report("decode", tok::decode_jsonl(tokenizer, args->input, args->output, args->skip_special));
  });

  auto* chat = cmd->add_subcommand(
      "chat", "{\"messages\": [...]} lines -> {\"text\", \"ids\", \"assistant_mask\"} lines (chat template)");
  add_io_options(chat, *args);
  chat->add_flag("--add-generation-prompt", args->generation_prompt,
                 "end with the assistant header (a line's \"add_generation_prompt\" overrides)");
  chat->add_option("--format", args->format,
                   "chat format: llama3, qwen3, chatml, qwen2.5, olmo2 (default: from the tokenizer's chat_template)");
  chat->callback([args] {
    std::optional<tok::ChatFormat> format;
    if (!args->format.empty()) format = tok::parse_chat_format(args->format);
    const auto tokenizer = tok::Tokenizer::load(args->tokenizer);
    report("chat", tok::chat_jsonl(tokenizer, args->input, args->output, args->generation_prompt, format));
  });

  auto* info = cmd->add_subcommand("info", "print the tokenizer's size, special ids and fingerprint as JSON");
  info->add_option("--tokenizer", args->tokenizer, "directory with tokenizer.json")
      ->required()
      ->check(CLI::ExistingDirectory);
  info->callback([args] {
    const auto t = tok::Tokenizer::load(args->tokenizer);
    nlohmann::json j;
    j["vocab_size"] = t.vocab_size();
    j["bos_id"] = t.bos_id() ? nlohmann::json(*t.bos_id()) : nlohmann::json();
    j["eos_id"] = t.eos_id() ? nlohmann::json(*t.eos_id()) : nlohmann::json();
    j["pad_id"] = t.pad_id() ? nlohmann::json(*t.pad_id()) : nlohmann::json();
    j["fingerprint"] = t.fingerprint();
    j["chat_format"] = nlohmann::json();
    if (!t.config().chat_template.empty()) {
      try {
        j["chat_format"] = tok::chat_format_name(tok::detect_chat_format(t.config().chat_template));
      } catch (const Error&) {
        j["chat_format"] = "unsupported";
      }
    }
    std::printf("%s\n", j.dump(2).c_str());
  });
}

}  // namespace xd::cli

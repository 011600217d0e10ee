// The file side of `xdistill tokenizer encode|decode|chat`: JSON-lines in,
// JSON-lines out (one output line per input line, written atomically).
#pragma once
#include <optional>
#include <string>

#include "xdistill/tokenizer/chat_template.h"
#include "xdistill/tokenizer/tokenizer.h"

namespace xd::tok {

struct JsonlStats {
  size_t lines = 0;
  size_t text_bytes = 0;
  double codec_seconds = 0;      // wall time inside encode/decode/render only
  double codec_cpu_seconds = 0;  // CPU time of all threads in that time
  double total_seconds = 0;
};

// {"text": "..."} -> {"ids": [...]}.
JsonlStats encode_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                        bool add_special_tokens, int threads);
// {"ids": [...]} -> {"text": "..."}.
JsonlStats decode_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                        bool skip_special_tokens);
// {"messages": [{"role", "content"}...], "add_generation_prompt": bool (optional)}
//   -> {"text": "...", "ids": [...], "assistant_mask": [...]}.
JsonlStats chat_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output,
                      bool add_generation_prompt, std::optional<ChatFormat> format);

}  // namespace xd::tok

// Chat templates: conversations rendered to text and ids exactly as
// transformers' apply_chat_template does, with a per-token mask of the tokens the
// assistant produced (the loss targets when training on chat data).
//
// Rendering uses built-in renderers, one per chat format, chosen by recognising
// the tokenizer's chat_template (or by name). See chat_template.cpp for why.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xdistill/tokenizer/tokenizer.h"

namespace xd::tok {

struct ChatMessage {
  std::string role, content;  // role: system, user, assistant (Qwen also: tool)
};

struct RenderedChat {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<uint8_t> assistant_mask;  // per id: 1 = assistant tokens (loss)
};

enum class ChatFormat {
  Llama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> (Llama-3 / 3.1 without tools)
  Qwen3,   // ChatML with Qwen3's <think> handling of the final assistant turn
  ChatML,  // plain ChatML: <|im_start|>role\n...<|im_end|>\n, no default system prompt
  Qwen25,  // ChatML that adds Qwen2.5's default system prompt when none is given
  Olmo2,   // {bos}<|system|>\n...\n<|user|>\n...\n<|assistant|>\n...{eos}
};

// Recognises the format of a chat_template source; throws xd::Error when the
// template is not one of the supported formats.
ChatFormat detect_chat_format(const std::string& chat_template);
// By name: "llama3", "qwen3", "chatml", "qwen2.5", "olmo2". xd::UsageError otherwise.
ChatFormat parse_chat_format(const std::string& name);
const char* chat_format_name(ChatFormat format);

// Uses the format of the tokenizer's own chat_template (xd::Error if it has none).
RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt);
RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt, ChatFormat format);

}  // namespace xd::tok

// Chat rendering with built-in renderers, one per chat format.
//
// Why not a Jinja engine: the templates of the supported families use a wide
// slice of Jinja (namespaces, reversed slices, string methods, filters, tests),
// and a partial engine fails in ways that are hard to see; while each family's
// template encodes a small, fixed format. A renderer per format is short, fast,
// and knows which spans the assistant produced, which the loss mask needs and
// which a generic template engine cannot tell. The format is recognised from the
// tokenizer's chat_template (or chosen by name), and the tests compare every
// renderer with transformers' apply_chat_template on the real templates.
#include "xdistill/tokenizer/chat_template.h"

#include <algorithm>

#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

// A piece of rendered text; `assistant` marks what the model is trained to produce.
struct Segment {
  std::string text;
  bool assistant = false;
};

using Segments = std::vector<Segment>;

void emit(Segments& out, std::string text, bool assistant = false) { out.push_back({std::move(text), assistant}); }

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Python's str.isspace() for one code point given as UTF-8 at s[i]; sets len.
bool python_space_at(const std::string& s, size_t i, size_t& len) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  len = 1;
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  static const char* const kSpaces[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80", "\xE2\x80\x81",
                                        "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85",
                                        "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89",
                                        "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF",
                                        "\xE2\x81\x9F", "\xE3\x80\x80"};
  for (const char* sp : kSpaces) {
    const size_t n = std::char_traits<char>::length(sp);
    if (s.compare(i, n, sp) == 0) {
      len = n;
      return true;
    }
  }
  return false;
}

// Jinja's `trim` filter: Python's str.strip() (Unicode whitespace).
std::string python_strip(const std::string& s) {
  size_t begin = 0, len = 0;
  while (begin < s.size() && python_space_at(s, begin, len)) begin += len;
  size_t end = begin;
  for (size_t i = begin; i < s.size();) {  // end of the last non-space code point
    if (python_space_at(s, i, len)) {
      i += len;
    } else {
      i += len;
      while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
      end = i;
    }
  }
  return s.substr(begin, end - begin);
}

std::string strip_newlines_left(const std::string& s) { return s.substr(std::min(s.find_first_not_of('\n'), s.size())); }
std::string strip_newlines_right(const std::string& s) {
  const size_t last = s.find_last_not_of('\n');
  return last == std::string::npos ? std::string() : s.substr(0, last + 1);
}

// Python's s.split(sep)[0] and s.split(sep)[-1].
std::string before_first(const std::string& s, const std::string& sep) { return s.substr(0, s.find(sep)); }
std::string after_last(const std::string& s, const std::string& sep) {
  const size_t at = s.rfind(sep);
  return at == std::string::npos ? s : s.substr(at + sep.size());
}

std::string config_token(const Tokenizer& t, const std::optional<std::string>& token, const char* name) {
  XD_CHECK(token, t.directory(), ": the chat template needs ", name, ", which tokenizer_config.json does not set");
  return *token;
}

// Llama-3: every message is a header plus trimmed content plus <|eot_id|>; the
// first gets the BOS. The base Llama-3 template always ends with the assistant
// header; the instruct one only when a generation prompt is asked for.
Segments render_llama3(const Tokenizer& t, const std::vector<ChatMessage>& messages, bool generation_prompt) {
  Segments out;
  const bool always_prompt = t.config().chat_template.find("add_generation_prompt") == std::string::npos &&
                             !t.config().chat_template.empty();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::string header = "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
    if (i == 0) header = config_token(t, t.config().bos_token, "bos_token") + header;
    emit(out, header);
    emit(out, python_strip(m.content) + "<|eot_id|>", m.role == "assistant");
  }
  if (generation_prompt || always_prompt) emit(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
  return out;
}

// Index of the last user message that is not a tool response (Qwen3's
// ns.last_query_index); assistant turns after it show their reasoning block.
size_t qwen3_last_query(const std::vector<ChatMessage>& messages) {
  for (size_t i = messages.size(); i-- > 0;) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" && !(starts_with(m.content, "<tool_response>") && ends_with(m.content, "</tool_response>")))
      return i;
  }
  return messages.size() - 1;
}

void render_tool_message(Segments& out, const std::vector<ChatMessage>& messages, size_t i) {
  if (i == 0 || messages[i - 1].role != "tool") emit(out, "<|im_start|>user");
  emit(out, "\n<tool_response>\n" + messages[i].content + "\n</tool_response>");
  if (i + 1 == messages.size() || messages[i + 1].role != "tool") emit(out, "<|im_end|>\n");
}

// Qwen3's ChatML: the final assistant turns (after the last user query) carry
// a <think>...</think> block, reasoning taken from the content when present.
Segments render_qwen3(const std::vector<ChatMessage>& messages, bool generation_prompt) {
  Segments out;
  if (messages[0].role == "system") emit(out, "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n");
  const size_t last_query = qwen3_last_query(messages);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      emit(out, "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n");
    } else if (m.role == "assistant") {
      std::string content = m.content, reasoning;
      if (m.content.find("</think>") != std::string::npos) {
        content = strip_newlines_left(after_last(m.content, "</think>"));
        reasoning = strip_newlines_left(after_last(strip_newlines_right(before_first(m.content, "</think>")), "<think>"));
      }
      emit(out, "<|im_start|>" + m.role + "\n");
      const bool last = i + 1 == messages.size();
      if (i > last_query && (last || !reasoning.empty())) {
        emit(out, "<think>\n" + strip_newlines_right(strip_newlines_left(reasoning)) + "\n</think>\n\n" +
                      strip_newlines_left(content) + "<|im_end|>",
             true);
      } else {
        emit(out, content + "<|im_end|>", true);
      }
      emit(out, "\n");
    } else if (m.role == "tool") {
      render_tool_message(out, messages, i);
    }
  }
  if (generation_prompt) emit(out, "<|im_start|>assistant\n");
  return out;
}

// Plain ChatML, optionally with Qwen2.5's default system prompt.
Segments render_chatml(const std::vector<ChatMessage>& messages, bool generation_prompt, const char* default_system) {
  Segments out;
  if (default_system) {
    const std::string system = messages[0].role == "system" ? messages[0].content : default_system;
    emit(out, "<|im_start|>system\n" + system + "<|im_end|>\n");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (default_system && m.role == "system" && i == 0) continue;
    if (m.role == "tool" && default_system) {
      render_tool_message(out, messages, i);
      continue;
    }
    emit(out, "<|im_start|>" + m.role + "\n");
    emit(out, m.content + "<|im_end|>", m.role == "assistant");
    emit(out, "\n");
  }
  if (generation_prompt) emit(out, "<|im_start|>assistant\n");
  return out;
}

// OLMo-2 instruct (Tülu 3 format, with the BOS in front).
Segments render_olmo2(const Tokenizer& t, const std::vector<ChatMessage>& messages, bool generation_prompt) {
  Segments out;
  const std::string eos = config_token(t, t.config().eos_token, "eos_token");
  emit(out, config_token(t, t.config().bos_token, "bos_token"));
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool last = i + 1 == messages.size();
    if (m.role == "system" || m.role == "user") {
      emit(out, "<|" + m.role + "|>\n" + m.content + "\n");
    } else if (m.role == "assistant") {
      emit(out, "<|assistant|>\n");
      emit(out, m.content + eos, true);
      if (!last) emit(out, "\n");
    }
    if (last && generation_prompt) emit(out, "<|assistant|>\n");
  }
  return out;
}

constexpr const char* kQwen25System = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

// Tokenises the whole text at once (as apply_chat_template does) and marks each
// token that holds at least one byte of an assistant segment: a token that
// straddles the header and the reply (e.g. "\n\n") is the model's to predict.
RenderedChat finish(const Tokenizer& t, const Segments& segments) {
  RenderedChat chat;
  std::vector<std::pair<size_t, size_t>> spans;  // assistant byte ranges, in order
  for (const Segment& s : segments) {
    if (s.assistant && !s.text.empty()) spans.emplace_back(chat.text.size(), chat.text.size() + s.text.size());
    chat.text += s.text;
  }
  std::vector<uint32_t> offsets;
  chat.ids = t.encode_with_offsets(chat.text, false, offsets);
  chat.assistant_mask.assign(chat.ids.size(), 0);
  size_t span = 0;
  for (size_t i = 0; i < chat.ids.size(); ++i) {
    const size_t begin = offsets[i];
    const size_t end = std::max<size_t>(i + 1 < offsets.size() ? offsets[i + 1] : chat.text.size(), begin + 1);
    while (span < spans.size() && spans[span].second <= begin) ++span;
    chat.assistant_mask[i] = span < spans.size() && spans[span].first < end ? 1 : 0;
  }
  return chat;
}

}  // namespace

ChatFormat detect_chat_format(const std::string& tmpl) {
  auto has = [&](const char* s) { return tmpl.find(s) != std::string::npos; };
  if (has("<|start_header_id|>")) {
    XD_CHECK(!has("Cutting Knowledge Date"), "chat template: the Llama-3.1 format (dated system header, tools) ",
             "is not supported; only Llama-3");
    return ChatFormat::Llama3;
  }
  if (has("<|im_start|>")) {
    if (has("<think>")) return ChatFormat::Qwen3;
    if (has(kQwen25System)) return ChatFormat::Qwen25;
    return ChatFormat::ChatML;
  }
  if (has("<|user|>") && has("<|assistant|>")) return ChatFormat::Olmo2;
  throw Error("chat template: unrecognised format (supported: Llama-3, Qwen3, Qwen2.5, ChatML, OLMo-2); "
              "choose one by name");
}

ChatFormat parse_chat_format(const std::string& name) {
  if (name == "llama3") return ChatFormat::Llama3;
  if (name == "qwen3") return ChatFormat::Qwen3;
  if (name == "chatml") return ChatFormat::ChatML;
  if (name == "qwen2.5") return ChatFormat::Qwen25;
  if (name == "olmo2") return ChatFormat::Olmo2;
  throw UsageError("unknown chat format '" + name + "' (expected llama3, qwen3, chatml, qwen2.5 or olmo2)");
}

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Qwen3: return "qwen3";
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Qwen25: return "qwen2.5";
    case ChatFormat::Olmo2: return "olmo2";
  }
  return "?";
}

RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) {
  XD_CHECK(!tokenizer.config().chat_template.empty(), tokenizer.directory(),
           ": tokenizer_config.json has no chat_template; choose a chat format by name");
  return render_chat(tokenizer, messages, add_generation_prompt, detect_chat_format(tokenizer.config().chat_template));
}

RenderedChat render_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt, ChatFormat format) {
  XD_CHECK(!messages.empty(), "chat: a conversation needs at least one message");
  switch (format) {
    case ChatFormat::Llama3: return finish(tokenizer, render_llama3(tokenizer, messages, add_generation_prompt));
    case ChatFormat::Qwen3: return finish(tokenizer, render_qwen3(messages, add_generation_prompt));
    case ChatFormat::ChatML: return finish(tokenizer, render_chatml(messages, add_generation_prompt, nullptr));
    case ChatFormat::Qwen25: return finish(tokenizer, render_chatml(messages, add_generation_prompt, kQwen25System));
    case ChatFormat::Olmo2: return finish(tokenizer, render_olmo2(tokenizer, messages, add_generation_prompt));
  }
  throw Error("chat: unknown format");
}

}  // namespace xd::tok

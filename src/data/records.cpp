#include "data/records.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "xdistill/data/utf8.h"
#include "xdistill/util/error.h"

namespace xd::data {
using nlohmann::json;

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool is_blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string::npos;
}

bool is_json_file(const std::string& path, InputFormat format) {
  if (format == InputFormat::Jsonl || format == InputFormat::Chat) return true;
  if (format == InputFormat::Text) return false;
  const std::string name = name_without_zst(path);
  return ends_with(name, ".jsonl") || ends_with(name, ".json") || ends_with(name, ".ndjson");
}

std::string json_type(const json& j) { return j.type_name(); }

}  // namespace

std::vector<InputFile> list_input_files(const PrepareOptions& options) {
  if (options.inputs.empty()) throw UsageError("data recipe: 'inputs' is empty; list at least one file or directory");
  std::vector<InputFile> files;
  for (size_t i = 0; i < options.inputs.size(); ++i)
    for (const std::string& path : expand_input_path(options.inputs[i].path))
      files.push_back({path, static_cast<int32_t>(i), is_json_file(path, options.inputs[i].format),
                       static_cast<uint64_t>(std::filesystem::file_size(path))});
  return files;
}

RecordReader::RecordReader(const std::vector<InputFile>& files, const std::vector<InputSpec>& inputs)
    : files_(files), inputs_(inputs) {}

uint64_t RecordReader::file_bytes_read() const { return finished_bytes_ + (lines_ ? lines_->file_bytes_read() : 0); }

bool RecordReader::next(RawRecord& record) {
  for (;;) {
    if (lines_ && next_in_file(record)) return true;
    if (lines_) finished_bytes_ += lines_->file_bytes_read();
    lines_.reset();
    if (++current_ >= static_cast<int32_t>(files_.size())) return false;
    lines_ = std::make_unique<LineReader>(files_[current_].path);
    whole_file_done_ = false;
  }
}

bool RecordReader::next_in_file(RawRecord& record) {
  const InputFile& file = files_[current_];
  const TextSplit split = inputs_[file.input].text_split;
  record.file = current_;
  record.bytes.clear();
  std::string line;
  if (file.json || split == TextSplit::Line) {
    while (lines_->next(line)) {
      if (is_blank(line)) continue;
      record.line = lines_->line_number();
      record.bytes = std::move(line);
      return true;
    }
    return false;
  }
  if (split == TextSplit::File) {
    // The whole file is one document, even an empty one (which is then counted as empty).
    if (whole_file_done_) return false;
    whole_file_done_ = true;
    record.line = 1;
    bool first = true;
    while (lines_->next(line)) {
      if (!first) record.bytes += '\n';
      record.bytes += line;
      first = false;
    }
    return true;
  }
  // Paragraphs: runs of non-blank lines separated by blank lines.
  while (lines_->next(line)) {
    if (is_blank(line)) {
      if (!record.bytes.empty()) return true;
      continue;
    }
    if (record.bytes.empty()) record.line = lines_->line_number();
    else record.bytes += '\n';
    record.bytes += line;
  }
  return !record.bytes.empty();
}

namespace {

struct Where {
  const std::string& path;
  int64_t line;
  std::string operator()(const std::string& why) const { return path + ":" + std::to_string(line) + ": " + why; }
};

RecordResult problem(RecordResult::Outcome outcome, std::string message) {
  RecordResult r;
  r.outcome = outcome;
  r.message = std::move(message);
  return r;
}

// The text or messages of a parsed JSON record; a description of the problem otherwise.
std::string extract(const json& j, const InputSpec& spec, std::string& text, std::vector<ChatTurn>& chat,
                    bool& is_chat) {
  if (!j.is_object()) return "expected a JSON object, got " + json_type(j);
  const bool has_text = j.contains(spec.text_field), has_messages = j.contains(spec.messages_field);
  is_chat = spec.format == InputFormat::Chat || (spec.format == InputFormat::Auto && !has_text && has_messages);
  if (!is_chat) {
    if (!has_text)
      return spec.format == InputFormat::Auto
                 ? "has neither a '" + spec.text_field + "' nor a '" + spec.messages_field + "' field"
                 : "missing the text field '" + spec.text_field + "'";
    const json& t = j.at(spec.text_field);
    if (t.is_null()) return "";  // null text: an empty document
    if (!t.is_string()) return "field '" + spec.text_field + "' is a " + json_type(t) + ", expected a string";
    text = t.get<std::string>();
    return "";
  }
  if (!has_messages) return "missing the messages field '" + spec.messages_field + "'";
  const json& m = j.at(spec.messages_field);
  if (!m.is_array()) return "field '" + spec.messages_field + "' is a " + json_type(m) + ", expected a list";
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string at = spec.messages_field + "[" + std::to_string(i) + "]";
    if (!m[i].is_object() || !m[i].contains("role") || !m[i].at("role").is_string())
      return at + " needs a string 'role'";
    if (!m[i].contains("content") || !m[i].at("content").is_string()) return at + " needs a string 'content'";
    chat.push_back({m[i].at("role").get<std::string>(), m[i].at("content").get<std::string>()});
  }
  return "";
}

}  // namespace

RecordResult process_record(const RawRecord& record, const InputFile& file, const PrepareOptions& options,
                            const Encoder& encoder) {
  using Outcome = RecordResult::Outcome;
  const Where where{file.path, record.line};
  const InputSpec& spec = options.inputs[file.input];
  // UTF-8 first, on the raw bytes: a JSON parser would reject invalid bytes as malformed JSON.
  size_t first_invalid = 0;
  const size_t invalid = count_invalid_utf8(record.bytes, &first_invalid);
  std::string repaired;
  if (invalid > 0) {
    if (options.invalid_utf8 == Utf8Policy::Fail)
      return problem(Outcome::Fatal, where("invalid UTF-8 at byte " + std::to_string(first_invalid) +
                                           " of the record (errors.invalid_utf8 is 'fail'; 'replace' substitutes "
                                           "U+FFFD, 'skip' drops the document)"));
    if (options.invalid_utf8 == Utf8Policy::Skip)
      return problem(Outcome::InvalidUtf8, where("invalid UTF-8; document skipped"));
    repaired = replace_invalid_utf8(record.bytes);
  }
  const std::string& bytes = invalid > 0 ? repaired : record.bytes;

  std::string text;
  std::vector<ChatTurn> chat;
  bool is_chat = false;
  if (file.json) {
    std::string why;
    try {
      why = extract(json::parse(bytes), spec, text, chat, is_chat);
    } catch (const json::parse_error& e) {
      why = std::string("malformed JSON: ") + e.what();
    }
    if (!why.empty()) {
      if (options.malformed_json == MalformedPolicy::Skip) return problem(Outcome::Malformed, where(why));
      return problem(Outcome::Fatal, where(why + " (set errors.malformed_json: skip to skip such lines)"));
    }
  } else {
    text = bytes;
  }

  RecordResult result;
  result.chat = is_chat;
  result.utf8_replacements = static_cast<int64_t>(invalid);
  bool empty = is_chat ? true : is_blank(text);
  for (const ChatTurn& turn : chat) empty = empty && is_blank(turn.content);
  if (!empty) {
    try {
      if (is_chat) {
        EncodedChat encoded = encoder.encode_chat(chat);
        result.ids = std::move(encoded.ids);
        if (options.chat_loss == ChatLoss::Assistant) result.mask = std::move(encoded.assistant_mask);
      } else {
        result.ids = encoder.encode_text(text);
      }
    } catch (const std::exception& e) {
      return problem(Outcome::Fatal, where(std::string("tokenizer failed: ") + e.what()));
    }
    empty = result.ids.empty();
  }
  if (empty) {
    if (options.empty_document == EmptyPolicy::Fail)
      return problem(Outcome::Fatal, where("empty document (errors.empty_document is 'fail'; 'skip' drops it)"));
    result = problem(Outcome::Empty, where("empty document"));
    result.utf8_replacements = static_cast<int64_t>(invalid);
  }
  if (result.outcome == Outcome::Document && !result.mask.empty() && result.mask.size() != result.ids.size())
    return problem(Outcome::Fatal, where("the chat template's assistant mask does not match its tokens"));
  return result;
}

}  // namespace xd::data

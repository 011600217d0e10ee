// Every option of a data-preparation recipe (`xdistill data prepare --config data.yaml`).
// The policies are described in include/xdistill/data/prepare.h.
#include "xdistill/data/options.h"

namespace xd::data {
using config::field;
using config::Schema;
using config::Type;

const Schema& recipe_schema() {
  static const Schema schema = [] {
    Schema s("data recipe");
    s.add_required("tokenizer", Type::String, "tokenizer directory (tokenizer.json + tokenizer_config.json)");
    s.add_required("output", Type::String, "output directory of the shard set");
    s.add_records(
        "inputs",
        {field("path", Type::String, "~", "input file or directory (files sorted by path); .zst files are decompressed"),
         field("format", Type::String, "auto",
               "auto: .jsonl/.json/.ndjson are JSON lines (text field, else messages), other files text; "
               "jsonl: JSON lines with a text field; chat: JSON lines with messages; text: plain text",
               {"auto", "jsonl", "chat", "text"}),
         field("text_field", Type::String, "text", "JSON field holding a document's text"),
         field("messages_field", Type::String, "messages", "JSON field holding a conversation [{role, content}]"),
         field("text_split", Type::String, "file",
               "plain text: one document per file, per non-blank line, or per paragraph (blank-line separated)",
               {"file", "line", "paragraph"})},
        "input files, read in this order");
    s.add("document.append_eos", Type::Bool, "true",
          "append the tokenizer's EOS token after every document (when it has one)");
    s.add("document.add_special_tokens", Type::Bool, "true",
          "encode plain text with the tokenizer's special tokens (e.g. BOS); chat uses its template");
    s.add("chat.loss", Type::String, "assistant",
          "loss mask of conversations: assistant tokens only, or every token", {"assistant", "all"});
    s.add("errors.malformed_json", Type::String, "fail",
          "a line that is not a JSON object with the expected field: fail (naming file and line) or skip and count",
          {"fail", "skip"});
    s.add("errors.invalid_utf8", Type::String, "replace",
          "invalid UTF-8: replace each maximal invalid subpart by U+FFFD and count, skip the document, or fail",
          {"replace", "skip", "fail"});
    s.add("errors.empty_document", Type::String, "skip",
          "a document with no text (whitespace only, no messages, or no tokens): skip and count, or fail",
          {"skip", "fail"});
    s.add("shards.tokens_per_shard", Type::Int, "67108864",
          "a shard closes at the first document end past this many tokens (4 bytes per token on disk)");
    s.add("prepare.threads", Type::Int, "0", "tokenizer threads (0 = all cores); the output does not depend on it");
    s.add("prepare.resume", Type::Bool, "true",
          "continue an interrupted preparation of the same recipe from its last finished shard");
    s.add("prepare.records_per_unit", Type::Int, "256", "records a worker thread tokenizes at a time");
    return s;
  }();
  return schema;
}

}  // namespace xd::data

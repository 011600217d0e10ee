// `xdistill data prepare`: text and chat data in, a shard set (manifest.h) out.
//
// Inputs are read in recipe order (a directory: its files sorted by path). Records
// are tokenized by worker threads in units and written in input order, so the output
// is byte-identical for any thread count. A shard closes at the first document end
// past tokens_per_shard tokens; after each one, the staging directory
// "<output>.partial" records how far the input was read, and a later run of the same
// recipe continues from there (prepare.resume).
//
// Bad input (each case counted in the manifest's "stats"):
// - a malformed JSON line (not JSON, not an object, missing or mistyped text or
//   messages field): errors.malformed_json = fail (the error names file and line) or
//   skip.
// - invalid UTF-8 (checked on the raw bytes, before JSON parsing): errors.invalid_utf8 =
//   replace (each maximal invalid subpart becomes U+FFFD; see utf8.h), skip (drop the
//   document) or fail.
// - an empty document (text with only whitespace, a conversation without messages or
//   with only empty contents, or text the tokenizer turns into no tokens):
//   errors.empty_document = skip or fail. Blank lines of a JSONL file are not records.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "xdistill/config/config.h"
#include "xdistill/data/encoder.h"
#include "xdistill/data/manifest.h"

namespace xd::data {

enum class InputFormat { Auto, Jsonl, Chat, Text };
enum class TextSplit { File, Line, Paragraph };
enum class ChatLoss { Assistant, All };
enum class MalformedPolicy { Fail, Skip };
enum class Utf8Policy { Replace, Skip, Fail };
enum class EmptyPolicy { Skip, Fail };

struct InputSpec {
  std::string path;  // file or directory
  InputFormat format = InputFormat::Auto;
  std::string text_field = "text";
  std::string messages_field = "messages";
  TextSplit text_split = TextSplit::File;
};

struct PrepareOptions {
  std::string tokenizer;             // recorded only; the caller builds the Encoder from it
  std::vector<InputSpec> inputs;
  std::string output;
  int64_t tokens_per_shard = int64_t(1) << 26;
  bool append_eos = true;
  bool add_special_tokens = true;    // recorded only; the caller's Encoder applies it
  ChatLoss chat_loss = ChatLoss::Assistant;
  MalformedPolicy malformed_json = MalformedPolicy::Fail;
  Utf8Policy invalid_utf8 = Utf8Policy::Replace;
  EmptyPolicy empty_document = EmptyPolicy::Skip;
  int threads = 0;                   // 0 = all cores
  bool resume = true;
  int64_t records_per_unit = 256;    // records a worker tokenizes at a time
  bool show_progress = true;
  // Testing hook: fail as if killed right after this many shards (< 0: never).
  int64_t interrupt_after_shards = -1;
};

struct PrepareResult {
  Manifest manifest;
  int64_t resumed_records = 0;  // records skipped because a previous run had written them
};

PrepareResult prepare_shards(const PrepareOptions& options, const Encoder& encoder);

// Options from a resolved data recipe (recipe_schema() in options.h).
PrepareOptions prepare_options(const config::Config& config);

// The part of the options that decides the output, as JSON (recorded in the manifest
// and hashed to recognise a resumable run); threads and progress are not in it.
nlohmann::json options_to_json(const PrepareOptions& options);

}  // namespace xd::data

// PrepareOptions <-> a resolved data recipe, and the options' canonical JSON form.
#include <map>

#include "xdistill/data/prepare.h"
#include "xdistill/util/error.h"

namespace xd::data {
using nlohmann::json;

namespace {

template <typename Enum>
struct Names {
  std::vector<std::pair<Enum, const char*>> table;
  const char* name(Enum e) const {
    for (const auto& [value, text] : table)
      if (value == e) return text;
    return "?";
  }
  Enum parse(const std::string& text, const std::string& key) const {
    std::string known;
    for (const auto& [value, name] : table) {
      if (text == name) return value;
      known += (known.empty() ? "" : ", ") + std::string(name);
    }
    throw UsageError("data recipe: " + key + " is '" + text + "'; expected one of " + known);
  }
};

const Names<InputFormat> kFormats{{{InputFormat::Auto, "auto"}, {InputFormat::Jsonl, "jsonl"},
                                   {InputFormat::Chat, "chat"}, {InputFormat::Text, "text"}}};
const Names<TextSplit> kSplits{{{TextSplit::File, "file"}, {TextSplit::Line, "line"}, {TextSplit::Paragraph, "paragraph"}}};
const Names<ChatLoss> kChatLoss{{{ChatLoss::Assistant, "assistant"}, {ChatLoss::All, "all"}}};
const Names<MalformedPolicy> kMalformed{{{MalformedPolicy::Fail, "fail"}, {MalformedPolicy::Skip, "skip"}}};
const Names<Utf8Policy> kUtf8{{{Utf8Policy::Replace, "replace"}, {Utf8Policy::Skip, "skip"}, {Utf8Policy::Fail, "fail"}}};
const Names<EmptyPolicy> kEmpty{{{EmptyPolicy::Skip, "skip"}, {EmptyPolicy::Fail, "fail"}}};

}  // namespace

json options_to_json(const PrepareOptions& o) {
  json inputs = json::array();
  for (const InputSpec& in : o.inputs)
    inputs.push_back({{"path", in.path}, {"format", kFormats.name(in.format)}, {"text_field", in.text_field},
                      {"messages_field", in.messages_field}, {"text_split", kSplits.name(in.text_split)}});
  return {{"tokenizer", o.tokenizer},
          {"inputs", inputs},
          {"document", {{"append_eos", o.append_eos}, {"add_special_tokens", o.add_special_tokens}}},
          {"chat", {{"loss", kChatLoss.name(o.chat_loss)}}},
          {"errors",
           {{"malformed_json", kMalformed.name(o.malformed_json)}, {"invalid_utf8", kUtf8.name(o.invalid_utf8)},
            {"empty_document", kEmpty.name(o.empty_document)}}},
          {"shards", {{"tokens_per_shard", o.tokens_per_shard}}}};
}

PrepareOptions prepare_options(const config::Config& c) {
  c.check_required();
  PrepareOptions o;
  o.tokenizer = c.get<std::string>("tokenizer");
  o.output = c.get<std::string>("output");
  for (const config::Record& r : c.records("inputs")) {
    InputSpec in;
    in.path = r.get<std::string>("path");
    in.format = kFormats.parse(r.get<std::string>("format"), r.where() + ".format");
    in.text_field = r.get<std::string>("text_field");
    in.messages_field = r.get<std::string>("messages_field");
    in.text_split = kSplits.parse(r.get<std::string>("text_split"), r.where() + ".text_split");
    o.inputs.push_back(std::move(in));
  }
  o.append_eos = c.get<bool>("document.append_eos");
  o.add_special_tokens = c.get<bool>("document.add_special_tokens");
  o.chat_loss = kChatLoss.parse(c.get<std::string>("chat.loss"), "chat.loss");
  o.malformed_json = kMalformed.parse(c.get<std::string>("errors.malformed_json"), "errors.malformed_json");
  o.invalid_utf8 = kUtf8.parse(c.get<std::string>("errors.invalid_utf8"), "errors.invalid_utf8");
  o.empty_document = kEmpty.parse(c.get<std::string>("errors.empty_document"), "errors.empty_document");
  o.tokens_per_shard = c.get<int64_t>("shards.tokens_per_shard");
  o.threads = c.get<int>("prepare.threads");
  o.resume = c.get<bool>("prepare.resume");
  o.records_per_unit = c.get<int64_t>("prepare.records_per_unit");
  return o;
}

}  // namespace xd::data

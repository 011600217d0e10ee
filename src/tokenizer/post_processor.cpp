#include "tokenizer/post_processor.h"

#include <nlohmann/json.hpp>

#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

// TemplateProcessing's "single" template: special tokens around the sequence "A".
void template_tokens(const nlohmann::json& spec, const std::string& where, std::vector<int32_t>& before,
                     std::vector<int32_t>& after) {
  const auto& specials = spec.at("special_tokens");
  bool seen_sequence = false;
  for (const auto& item : spec.at("single")) {
    if (item.contains("Sequence")) {
      XD_CHECK(item.at("Sequence").value("id", std::string("A")) == "A", where,
               ": TemplateProcessing single template may only use sequence A");
      seen_sequence = true;
      continue;
    }
    XD_CHECK(item.contains("SpecialToken"), where, ": TemplateProcessing item must be Sequence or SpecialToken");
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    XD_CHECK(specials.contains(name), where, ": TemplateProcessing special token '", name,
             "' missing from special_tokens");
    auto& target = seen_sequence ? after : before;
    for (const auto& id : specials.at(name).at("ids")) target.push_back(id.get<int32_t>());
  }
}

int32_t pair_id(const nlohmann::json& pair, const std::string& where) {
  XD_CHECK(pair.is_array() && pair.size() == 2, where, ": expected [token, id]");
  return pair[1].get<int32_t>();
}

}  // namespace

PostProcessor PostProcessor::from_json(const nlohmann::json& spec, const std::string& where) {
  PostProcessor p;
  p.add_spec(spec, where);
  return p;
}

void PostProcessor::add_spec(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return;
  const std::string type = spec.at("type").get<std::string>();
  std::vector<int32_t> before, after;
  if (type == "Sequence") {
    for (const auto& child : spec.at("processors")) add_spec(child, where);
    return;
  } else if (type == "ByteLevel") {
    return;  // only adjusts offsets
  } else if (type == "TemplateProcessing") {
    template_tokens(spec, where + ": post_processor", before, after);
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    before.push_back(pair_id(spec.at("cls"), where));
    after.push_back(pair_id(spec.at("sep"), where));
  } else {
    throw Error(where + ": post_processor type '" + type +
                "' is not supported (supported: TemplateProcessing, ByteLevel, Roberta/BertProcessing, Sequence)");
  }
  // A later processor wraps the result of the earlier ones.
  prefix_.insert(prefix_.begin(), before.begin(), before.end());
  suffix_.insert(suffix_.end(), after.begin(), after.end());
}

}  // namespace xd::tok

// Post-processors of tokenizer.json ("post_processor") for single sequences:
// the tokens they put before and after the encoded text (TemplateProcessing,
// RobertaProcessing, BertProcessing, Sequence; ByteLevel adds none).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace xd::tok {

class PostProcessor {
 public:
  static PostProcessor from_json(const nlohmann::json& spec, const std::string& where);

  const std::vector<int32_t>& prefix() const { return prefix_; }
  const std::vector<int32_t>& suffix() const { return suffix_; }

 private:
  void add_spec(const nlohmann::json& spec, const std::string& where);
  std::vector<int32_t> prefix_, suffix_;
};

}  // namespace xd::tok

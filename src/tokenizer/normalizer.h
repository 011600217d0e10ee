// Text normalisers of tokenizer.json ("normalizer"): the Unicode normal forms,
// alone or in a Sequence. Implemented with utf8proc.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace xd::tok {

class Normalizer {
 public:
  enum class Form { NFC, NFD, NFKC, NFKD };

  // `spec` is the JSON value of "normalizer" (may be null). Throws xd::Error
  // naming `where` for a type this implementation does not support.
  static Normalizer from_json(const nlohmann::json& spec, const std::string& where);

  bool empty() const { return forms_.empty(); }
  // Normalises `text` (valid UTF-8) into `out`; returns false and leaves `out`
  // untouched when the text is already normal (the common, all-ASCII case).
  bool normalize(std::string_view text, std::string& out) const;

 private:
  std::vector<Form> forms_;
};

}  // namespace xd::tok

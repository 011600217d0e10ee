// Decoders of tokenizer.json ("decoder"): token strings back to text. ByteLevel
// maps the GPT-2 alphabet back to bytes (tokens with other characters, such as
// added tokens with spaces, pass through as their UTF-8); no decoder joins the
// tokens with spaces. The bytes are then read as UTF-8, lossily.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace xd::tok {

class Decoder {
 public:
  static Decoder from_json(const nlohmann::json& spec, const std::string& where);

  // The bytes one token contributes (before the lossy UTF-8 step).
  std::string token_bytes(std::string_view token) const;
  // Decodes a sequence of tokens given their precomputed token_bytes.
  std::string join(const std::vector<const std::string*>& token_bytes) const;

 private:
  bool byte_level_ = false;
};

}  // namespace xd::tok

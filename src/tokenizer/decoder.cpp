#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"
#include "xdistill/util/error.h"

namespace xd::tok {

Decoder Decoder::from_json(const nlohmann::json& spec, const std::string& where) {
  Decoder d;
  if (spec.is_null()) return d;
  const std::string type = spec.at("type").get<std::string>();
  if (type == "ByteLevel") {
    d.byte_level_ = true;
  } else if (type == "Sequence" && spec.at("decoders").size() == 1 &&
             spec.at("decoders")[0].value("type", "") == "ByteLevel") {
    d.byte_level_ = true;
  } else {
    throw Error(where + ": decoder type '" + type + "' is not supported (supported: ByteLevel)");
  }
  return d;
}

std::string Decoder::token_bytes(std::string_view token) const {
  std::string bytes;
  if (byte_level_ && byte_level_to_bytes(token, bytes)) return bytes;
  return std::string(token);
}

std::string Decoder::join(const std::vector<const std::string*>& tokens) const {
  std::string bytes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!byte_level_ && i > 0) bytes += ' ';
    bytes += *tokens[i];
  }
  return utf8_lossy(bytes);
}

}  // namespace xd::tok

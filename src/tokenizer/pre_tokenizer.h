// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): Split (regex or literal,
// every split behaviour, invert), ByteLevel, and Sequence of those. The output is
// a list of byte ranges ("words") that the model encodes independently.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/regex.h"

namespace xd::tok {

struct Piece {
  uint32_t begin, end;  // byte range in the text given to split()
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class PreTokenizer {
 public:
  // `spec` is the JSON value of "pre_tokenizer" (may be null).
  static PreTokenizer from_json(const nlohmann::json& spec, const std::string& where);
  // One Split step; for tests and for building pre-tokenizers in code.
  static PreTokenizer split_regex(const std::string& pattern, SplitBehavior behavior, bool invert);

  // Whether a ByteLevel step maps the words to the GPT-2 byte alphabet, so that
  // the model sees bytes (the BPE model then works on raw bytes directly).
  bool byte_level() const { return byte_level_; }

  // Splits `text` (valid UTF-8) into words, appended to `out` (empty words dropped).
  void split(std::string_view text, std::vector<Piece>& out) const;

 private:
  struct Step {
    std::shared_ptr<Regex> regex;
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
  };
  void add_spec(const nlohmann::json& spec, const std::string& where);
  static void apply(const Step& step, std::string_view text, const Piece& piece, std::vector<Piece>& out);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace xd::tok

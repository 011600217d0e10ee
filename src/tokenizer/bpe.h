// The BPE model of tokenizer.json ("model": {"type": "BPE"}): vocabulary, ranked
// merges, and the merge loop that turns one pre-tokenized word into ids. Merges
// are applied lowest rank first, leftmost first among equal ranks, exactly as
// Hugging Face's priority-queue implementation does.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/flat_map.h"

namespace xd::tok {

class BpeModel {
 public:
  // `byte_level`: words arrive as raw bytes and are mapped to the GPT-2 alphabet.
  static BpeModel from_json(const nlohmann::json& model, bool byte_level, const std::string& where);

  // Appends the ids of one word (raw bytes when byte-level, else text).
  void encode_word(std::string_view word, std::vector<int32_t>& out, WordCache& cache) const;

  // One more than the largest id of the model vocabulary.
  int64_t id_limit() const { return int64_t(id_to_token_.size()); }
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token text of `id`, or nullptr where the model has no such id.
  const std::string* id_to_token(int32_t id) const;
  // Vocabulary and merges in a canonical order, for fingerprints.
  void describe(std::string& out) const;

 private:
  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;
  void merge(std::vector<int32_t>& symbols) const;
  void merge_long(std::vector<int32_t>& symbols) const;

  std::vector<std::string> id_to_token_;
  StringIdMap vocab_;            // token text -> id
  StringIdMap raw_vocab_;        // byte-level only: raw bytes of a token -> id
  PairMap merges_;
  std::vector<std::pair<std::string, std::string>> merge_list_;
  int32_t byte_ids_[256];        // byte-level fast path: id of each single byte, -1 if absent
  bool byte_level_ = false, fast_bytes_ = false;
  bool ignore_merges_ = false, byte_fallback_ = false, fuse_unk_ = false;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix
  int32_t unk_id_ = -1;
};

}  // namespace xd::tok

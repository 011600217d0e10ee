// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) in C++:
// byte-level BPE with the normalisers, regex pre-tokenizers, added/special
// tokens, post-processor and decoder that Llama-3, Qwen and cl100k-style
// tokenizers use. Ids equal those of the `tokenizers` library.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace xd::tok {

struct TokenizerState;  // immutable, shared by copies

// What tokenizer_config.json (or chat_template.jinja) says beyond tokenizer.json.
struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;  // token text
  std::string chat_template;  // Jinja source; empty when the tokenizer ships none
};

class Tokenizer {  // cheap to copy (shared immutable state inside); thread-safe
 public:
  // `dir` holds tokenizer.json and optionally tokenizer_config.json. Throws
  // xd::Error naming the file and key for anything malformed or unsupported.
  static Tokenizer load(const std::string& dir);

  // Text (UTF-8; xd::Error otherwise) to ids. add_special_tokens applies the
  // post-processor (e.g. a BOS); special-token strings inside the text are
  // always recognised, as in Hugging Face.
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const;
  // Same, plus the byte offset in `text` where each token starts (a token that
  // comes from normalised text gets the start of its unnormalised piece; a
  // token added by the post-processor gets 0 or text.size()).
  std::vector<int32_t> encode_with_offsets(const std::string& text, bool add_special_tokens,
                                           std::vector<uint32_t>& offsets) const;
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts,
                                                 bool add_special_tokens = true,
                                                 int threads = 0) const;  // 0 = all cores

  // Ids to text, as Hugging Face's decode (bytes that are not valid UTF-8 become
  // U+FFFD). Throws xd::Error for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // One more than the largest id (model vocabulary and added tokens), so every
  // id indexes a row of an embedding of this size.
  int64_t vocab_size() const;
  std::optional<int32_t> token_to_id(const std::string& token) const;
  // The token text of an id (byte-level text for model tokens); nullopt if unused.
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;  // an added token flagged "special"

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;
  const TokenizerConfig& config() const;
  const std::string& directory() const;

  // Stable hex hash of vocabulary, merges, added tokens and the text pipeline
  // (normaliser, pre-tokenizer, post-processor) — equal fingerprints mean equal ids.
  std::string fingerprint() const;

 private:
  std::shared_ptr<const TokenizerState> state_;
};

}  // namespace xd::tok

// The immutable state behind xd::tok::Tokenizer, assembled by load().
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "xdistill/tokenizer/tokenizer.h"

namespace xd::tok {

struct TokenizerState {
  std::string directory;
  TokenizerConfig config;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  PostProcessor post_processor;
  Decoder decoder;

  std::vector<AddedToken> added_tokens;
  AddedTokenMatcher raw_matcher;         // added tokens with normalized=false, on the raw text
  AddedTokenMatcher normalized_matcher;  // normalized=true, on the normalised pieces
  StringIdMap added_ids;                 // added token content -> id

  std::vector<std::string> decoded_bytes;  // per id: the bytes decode emits
  std::vector<uint8_t> special;            // per id: 1 for special added tokens
  std::vector<uint8_t> exists;             // per id: 1 when the id has a token
  std::vector<uint32_t> raw_length;        // per id: byte length of the token in the input text
  int64_t id_limit = 0;
  std::optional<int32_t> bos, eos, pad;
  std::string fingerprint;
  uint64_t serial = 0;  // distinguishes tokenizers in per-thread caches
};

}  // namespace xd::tok

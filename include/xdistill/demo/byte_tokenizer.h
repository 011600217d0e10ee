// The demo's tokenizer: byte-level BPE with no merges (one token per byte) plus
// <|bos|> and <|eos|>, written as a Hugging Face tokenizer.json so that the demo runs
// through the same tokenizer, data and evaluation paths as a real teacher.
#pragma once
#include <string>

namespace xd::demo {

constexpr int kByteVocab = 256;
constexpr int kBosId = 256;
constexpr int kEosId = 257;
constexpr int kVocabSize = 258;

// Writes tokenizer.json and tokenizer_config.json into `dir` (atomically).
void write_byte_tokenizer(const std::string& dir);

}  // namespace xd::demo

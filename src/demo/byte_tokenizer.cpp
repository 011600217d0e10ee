#include "xdistill/demo/byte_tokenizer.h"

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "xdistill/util/fs.h"

namespace xd::demo {
using nlohmann::json;

void write_byte_tokenizer(const std::string& dir) {
  json vocab = json::object();
  for (int b = 0; b < kByteVocab; ++b)
    vocab[tok::bytes_to_byte_level(std::string(1, static_cast<char>(b)))] = b;
  auto special = [](int id, const char* text) {
    return json{{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false},
                           {"trim_offsets", true}, {"use_regex", true}};
  json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", json::array({special(kBosId, "<|bos|>"), special(kEosId, "<|eos|>")})},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                 {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                 {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                 {"vocab", vocab}, {"merges", json::array()}}},
  };
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"bos_token", "<|bos|>"},
                 {"eos_token", "<|eos|>"}, {"model_max_length", 4096}, {"clean_up_tokenization_spaces", false}};
  fs::write_atomic(dir + "/tokenizer.json", tokenizer.dump(1) + "\n");
  fs::write_atomic(dir + "/tokenizer_config.json", config.dump(1) + "\n");
}

}  // namespace xd::demo

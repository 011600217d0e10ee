// Tokenizer::load: reads tokenizer.json and tokenizer_config.json and assembles
// the pipeline, checking every part it relies on.
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_state.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::tok {
namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  const std::string text = fs::read_text(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
}

// A token field of tokenizer_config.json: a string, or {"content": ...}, or null.
std::optional<std::string> token_field(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return it->at("content").get<std::string>();
  return std::nullopt;
}

TokenizerConfig read_config(const std::filesystem::path& dir) {
  TokenizerConfig c;
  const auto path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(path)) {
    const nlohmann::json j = read_json(path);
    c.bos_token = token_field(j, "bos_token");
    c.eos_token = token_field(j, "eos_token");
    c.pad_token = token_field(j, "pad_token");
    c.unk_token = token_field(j, "unk_token");
    const auto t = j.find("chat_template");
    if (t != j.end() && t->is_string()) {
      c.chat_template = t->get<std::string>();
    } else if (t != j.end() && t->is_array()) {  // named templates: use "default"
      for (const auto& named : *t)
        if (named.value("name", "") == "default") c.chat_template = named.value("template", "");
    }
  }
  const auto jinja = dir / "chat_template.jinja";
  if (c.chat_template.empty() && std::filesystem::exists(jinja)) c.chat_template = fs::read_text(jinja);
  return c;
}

std::vector<AddedToken> read_added_tokens(const nlohmann::json& list, const std::string& where) {
  std::vector<AddedToken> tokens;
  if (list.is_null()) return tokens;
  for (const auto& t : list) {
    AddedToken a;
    a.id = t.at("id").get<int32_t>();
    a.content = t.at("content").get<std::string>();
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.special = t.value("special", false);
    a.normalized = t.value("normalized", !a.special);
    XD_CHECK(a.id >= 0, where, ": added token '", a.content, "' has a negative id");
    if (!a.content.empty()) tokens.push_back(std::move(a));
  }
  return tokens;
}

// Matching order: special tokens first, then the others (as Hugging Face builds its tries).
void build_matchers(TokenizerState& s) {
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (int pass = 0; pass < 2; ++pass) {
    for (const AddedToken& t : s.added_tokens) {
      if (t.special != (pass == 0)) continue;
      if (t.normalized) {
        std::string norm;
        normalized_patterns.push_back(s.normalizer.normalize(t.content, norm) ? norm : t.content);
        normalized.push_back(t);
      } else {
        raw_patterns.push_back(t.content);
        raw.push_back(t);
      }
    }
  }
  s.raw_matcher = AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
  s.normalized_matcher = AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
}

// Per-id tables for decoding and offsets.
void build_id_tables(TokenizerState& s) {
  s.id_limit = s.model.id_limit();
  for (const AddedToken& t : s.added_tokens) s.id_limit = std::max<int64_t>(s.id_limit, int64_t(t.id) + 1);
  const size_t n = size_t(s.id_limit);
  s.decoded_bytes.assign(n, std::string());
  s.special.assign(n, 0);
  s.raw_length.assign(n, 0);
  s.exists.assign(n, 0);
  for (size_t id = 0; id < n; ++id) {
    if (const std::string* token = s.model.id_to_token(int32_t(id))) {
      s.decoded_bytes[id] = s.decoder.token_bytes(*token);
      s.raw_length[id] = uint32_t(s.pre_tokenizer.byte_level() ? s.decoded_bytes[id].size() : token->size());
      s.exists[id] = 1;
    }
  }
  s.added_ids.reserve(s.added_tokens.size() + 1);
  for (const AddedToken& t : s.added_tokens) {
    s.decoded_bytes[size_t(t.id)] = s.decoder.token_bytes(t.content);
    s.raw_length[size_t(t.id)] = uint32_t(t.content.size());
    s.special[size_t(t.id)] = t.special ? 1 : 0;
    s.exists[size_t(t.id)] = 1;
    s.added_ids.insert(t.content, t.id);
  }
}

std::string hex64(uint64_t v) {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016" PRIx64, v);
  return buffer;
}

// Two independent 64-bit FNV-1a hashes (different offset bases) of a canonical
// description: 128 bits, stable across runs and machines.
std::string fingerprint_of(const TokenizerState& s, const nlohmann::json& root) {
  std::string text;
  s.model.describe(text);
  for (const AddedToken& t : s.added_tokens)
    text += "added\t" + std::to_string(t.id) + '\t' + t.content + '\t' + std::to_string(t.single_word) +
            std::to_string(t.lstrip) + std::to_string(t.rstrip) + std::to_string(t.normalized) +
            std::to_string(t.special) + '\n';
  for (const char* key : {"normalizer", "pre_tokenizer", "post_processor"})
    text += std::string(key) + '\t' + (root.contains(key) ? root.at(key).dump() : "null") + '\n';
  uint64_t h1 = 0xCBF29CE484222325ull, h2 = 0x84222325CBF29CE4ull;
  for (unsigned char c : text) {
    h1 = (h1 ^ c) * 0x100000001B3ull;
    h2 = (h2 ^ (c + 0x5Bu)) * 0x100000001B3ull;
  }
  return hex64(h1) + hex64(h2);
}

std::optional<int32_t> id_of(const TokenizerState& s, const std::optional<std::string>& token) {
  if (!token) return std::nullopt;
  const int32_t added = s.added_ids.find(*token);
  if (added >= 0) return added;
  return s.model.token_to_id(*token);
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  static std::atomic<uint64_t> next_serial{1};
  const std::filesystem::path root_dir(dir);
  const auto json_path = root_dir / "tokenizer.json";
  XD_CHECK(std::filesystem::exists(json_path), dir, ": no tokenizer.json in this directory");
  const std::string where = json_path.string();
  const nlohmann::json root = read_json(json_path);

  auto s = std::make_shared<TokenizerState>();
  try {
    s->directory = dir;
    s->config = read_config(root_dir);
    s->normalizer = Normalizer::from_json(root.value("normalizer", nlohmann::json()), where);
    s->pre_tokenizer = PreTokenizer::from_json(root.value("pre_tokenizer", nlohmann::json()), where);
    XD_CHECK(root.contains("model"), where, ": missing \"model\"");
    s->model = BpeModel::from_json(root.at("model"), s->pre_tokenizer.byte_level(), where);
    s->decoder = Decoder::from_json(root.value("decoder", nlohmann::json()), where);
    s->added_tokens = read_added_tokens(root.value("added_tokens", nlohmann::json()), where);
    build_matchers(*s);
    build_id_tables(*s);
    s->post_processor = PostProcessor::from_json(root.value("post_processor", nlohmann::json()), where);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": unexpected structure: " + e.what());
  }
  s->bos = id_of(*s, s->config.bos_token);
  s->eos = id_of(*s, s->config.eos_token);
  s->pad = id_of(*s, s->config.pad_token);
  s->fingerprint = fingerprint_of(*s, root);
  s->serial = next_serial++;
  log::debug("tokenizer ", dir, ": ", s->id_limit, " ids, ", s->added_tokens.size(),
             " added tokens, fingerprint ", s->fingerprint);
  Tokenizer t;
  t.state_ = std::move(s);
  return t;
}

}  // namespace xd::tok

#include "xdistill/data/manifest.h"

#include <cstdio>
#include <filesystem>

#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::data {
using nlohmann::json;

namespace {

json file_to_json(const ShardFile& f) { return {{"file", f.file}, {"bytes", f.bytes}, {"sha256", f.sha256}}; }

template <typename T>
T field(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key))
    throw Error(where + ": missing field '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw Error(where + ": field '" + key + "' has the wrong type: " + e.what());
  }
}

ShardFile file_from_json(const json& j, const std::string& where) {
  return {field<std::string>(j, "file", where), field<uint64_t>(j, "bytes", where),
          field<std::string>(j, "sha256", where)};
}

}  // namespace

std::string shard_file_name(int64_t index, const std::string& kind) {
  char name[64];
  std::snprintf(name, sizeof name, "shard_%05lld.%s", static_cast<long long>(index), kind.c_str());
  return name;
}

json manifest_to_json(const Manifest& m) {
  json shards = json::array();
  for (const ShardInfo& s : m.shards)
    shards.push_back({{"tokens", s.tokens}, {"documents", s.documents}, {"loss_tokens", s.loss_tokens},
                      {"tokens_file", file_to_json(s.tokens_file)}, {"docs_file", file_to_json(s.docs_file)},
                      {"mask_file", file_to_json(s.mask_file)}});
  json tok = {{"fingerprint", m.tokenizer.fingerprint}, {"vocab_size", m.tokenizer.vocab_size},
              {"eos_id", m.tokenizer.eos_id ? json(*m.tokenizer.eos_id) : json(nullptr)},
              {"source", m.tokenizer.source}};
  return {{"format", kManifestFormat}, {"version", kManifestVersion}, {"token_dtype", "uint32"},
          {"tokenizer", tok}, {"eos_appended", m.eos_appended},
          {"tokens", m.tokens}, {"documents", m.documents}, {"loss_tokens", m.loss_tokens},
          {"shards", shards}, {"stats", m.stats}, {"recipe", m.recipe}};
}

Manifest manifest_from_json(const json& j, const std::string& where) {
  const auto format = field<std::string>(j, "format", where);
  if (format != kManifestFormat)
    throw Error(where + ": not a shard-set manifest (format '" + format + "', expected '" + kManifestFormat + "')");
  const int version = field<int>(j, "version", where);
  if (version > kManifestVersion)
    throw Error(where + ": manifest version " + std::to_string(version) + " is newer than this xdistill reads (" +
                std::to_string(kManifestVersion) + "); upgrade xdistill or re-run `xdistill data prepare`");
  if (field<std::string>(j, "token_dtype", where) != "uint32")
    throw Error(where + ": token_dtype must be uint32");
  Manifest m;
  const json& tok = j.at("tokenizer");
  m.tokenizer.fingerprint = field<std::string>(tok, "fingerprint", where + " tokenizer");
  m.tokenizer.vocab_size = field<int64_t>(tok, "vocab_size", where + " tokenizer");
  if (tok.contains("eos_id") && !tok.at("eos_id").is_null()) m.tokenizer.eos_id = tok.at("eos_id").get<int32_t>();
  if (tok.contains("source")) m.tokenizer.source = tok.at("source").get<std::string>();
  m.eos_appended = field<bool>(j, "eos_appended", where);
  m.tokens = field<int64_t>(j, "tokens", where);
  m.documents = field<int64_t>(j, "documents", where);
  m.loss_tokens = field<int64_t>(j, "loss_tokens", where);
  if (j.contains("stats")) m.stats = j.at("stats");
  if (j.contains("recipe")) m.recipe = j.at("recipe");
  const json& shards = j.at("shards");
  if (!shards.is_array()) throw Error(where + ": 'shards' must be a list");
  int64_t tokens = 0, documents = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string at = where + " shards[" + std::to_string(i) + "]";
    ShardInfo s;
    s.tokens = field<int64_t>(shards[i], "tokens", at);
    s.documents = field<int64_t>(shards[i], "documents", at);
    s.loss_tokens = field<int64_t>(shards[i], "loss_tokens", at);
    s.tokens_file = file_from_json(shards[i].at("tokens_file"), at + ".tokens_file");
    s.docs_file = file_from_json(shards[i].at("docs_file"), at + ".docs_file");
    s.mask_file = file_from_json(shards[i].at("mask_file"), at + ".mask_file");
    tokens += s.tokens;
    documents += s.documents;
    m.shards.push_back(std::move(s));
  }
  if (tokens != m.tokens || documents != m.documents)
    throw Error(where + ": the shards hold " + std::to_string(tokens) + " tokens in " + std::to_string(documents) +
                " documents, but the manifest's totals say " + std::to_string(m.tokens) + " and " +
                std::to_string(m.documents));
  return m;
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kManifestName).string();
  if (!std::filesystem::exists(path))
    throw Error(dir + ": no " + kManifestName + " (not a shard set; create one with `xdistill data prepare`)");
  json j;
  try {
    j = json::parse(fs::read_text(path));
  } catch (const json::parse_error& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  try {
    return manifest_from_json(j, path);
  } catch (const json::exception& e) {
    throw Error(path + ": malformed manifest: " + e.what());
  }
}

std::string manifest_text(const Manifest& manifest) { return manifest_to_json(manifest).dump(2) + "\n"; }

}  // namespace xd::data

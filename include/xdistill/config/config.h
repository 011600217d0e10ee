// A resolved configuration: the schema's defaults, then each recipe file in order
// (later files win), then each --set override. Every value is validated against the
// schema when it is read in; errors name the file, line and key path.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "xdistill/config/schema.h"

namespace xd::config {

class Record {
 public:
  Record(YAML::Node node, std::string where) : node_(std::move(node)), where_(std::move(where)) {}
  template <typename T> T get(const std::string& field) const { return node_[field].as<T>(); }
  bool has(const std::string& field) const { return node_[field] && !node_[field].IsNull(); }
  const std::string& where() const { return where_; }
  const YAML::Node& node() const { return node_; }

 private:
  YAML::Node node_;
  std::string where_;
};

class Config {
 public:
  explicit Config(const Schema& schema);

  // Loads recipe files in order (later wins) then applies "a.b.c=value" overrides.
  static Config load(const Schema& schema, const std::vector<std::string>& files,
                     const std::vector<std::string>& overrides = {});

  void merge_file(const std::string& file);
  void merge_yaml(const YAML::Node& root, const std::string& source);
  void apply_override(const std::string& assignment);  // "a.b.c=value"
  void set(const std::string& path, const std::string& value_yaml);
  // Throws UsageError listing every required option that is still unset.
  void check_required() const;

  bool has(const std::string& path) const;  // set and not null
  template <typename T> T get(const std::string& path) const;
  std::vector<Record> records(const std::string& path) const;
  // Where a value came from: "recipe.yaml:12", "--set", or "default".
  std::string where(const std::string& path) const;

  // The fully resolved configuration as YAML (for `config show` and checkpoints).
  std::string dump() const;
  const Schema& schema() const { return *schema_; }

 private:
  const Option& option_or_throw(const std::string& path, const std::string& source) const;
  void assign(const Option& opt, const YAML::Node& value, const std::string& source);

  const Schema* schema_;
  std::map<std::string, YAML::Node> values_;
  std::map<std::string, std::string> where_;
};

// Explicit instantiations live in config.cpp.
extern template bool Config::get<bool>(const std::string&) const;
extern template int64_t Config::get<int64_t>(const std::string&) const;
extern template int Config::get<int>(const std::string&) const;
extern template double Config::get<double>(const std::string&) const;
extern template std::string Config::get<std::string>(const std::string&) const;
extern template std::vector<std::string> Config::get<std::vector<std::string>>(const std::string&) const;
extern template std::vector<double> Config::get<std::vector<double>>(const std::string&) const;
extern template std::vector<int64_t> Config::get<std::vector<int64_t>>(const std::string&) const;

}  // namespace xd::config

// Declared options: every recipe key is declared once, with its type, default and
// help text. Modules declare their own sections (see each module's *_options.cpp);
// a command's schema is the union of the sections it uses.
#pragma once
#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

namespace xd::config {

enum class Type { Bool, Int, Float, String, IntList, FloatList, StringList, Records };
std::string type_name(Type t);

struct Option {
  std::string path;           // dotted key path, e.g. "optim.lr"
  Type type = Type::String;
  std::string default_yaml;   // YAML text of the default; "~" means unset
  std::string help;
  std::vector<std::string> choices;  // allowed values for strings; empty = any
  std::vector<Option> fields;        // for Records: the fields of one record (paths are field names)
  bool required = false;             // must be set by a recipe or --set
};

class Schema {
 public:
  explicit Schema(std::string name = "recipe") : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  Schema& add(const std::string& path, Type type, const std::string& default_yaml,
              const std::string& help, std::vector<std::string> choices = {});
  Schema& add_required(const std::string& path, Type type, const std::string& help,
                       std::vector<std::string> choices = {});
  // A list of records (e.g. a data mixture: [{path: ..., weight: ...}]).
  Schema& add_records(const std::string& path, std::vector<Option> fields, const std::string& help,
                      const std::string& default_yaml = "[]");
  // Merges another schema's options in; a path declared twice is a programming error.
  Schema& include(const Schema& other);

  const Option* find(const std::string& path) const;
  bool is_section(const std::string& path) const;  // some option lives below path
  const std::vector<Option>& options() const { return options_; }
  // Candidate keys at the level of `path` (same parent), for suggestions.
  std::vector<std::string> siblings(const std::string& path) const;
  // Human-readable listing of every option, grouped by section (for --help-recipe).
  std::string describe() const;

 private:
  std::string name_;
  std::vector<Option> options_;
  std::map<std::string, size_t> index_;
};

// Field helper for add_records.
Option field(const std::string& name, Type type, const std::string& default_yaml,
             const std::string& help, std::vector<std::string> choices = {});

// Levenshtein distance, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);
// The closest candidate to `key` if it is plausibly a typo of it; empty otherwise.
std::string closest(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace xd::config

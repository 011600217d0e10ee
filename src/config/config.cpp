#include "xdistill/config/config.h"

#include <filesystem>
#include <sstream>

#include "xdistill/util/error.h"

namespace xd::config {
namespace {

std::string at(const std::string& source, const YAML::Node& node) {
  if (source == "--set" || source == "default") return source;
  const YAML::Mark m = node.Mark();
  return m.line >= 0 ? source + ":" + std::to_string(m.line + 1) : source;
}

std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "null";
}

// Checks one scalar against a scalar type; returns an error text or "".
std::string check_scalar(Type type, const YAML::Node& n, const std::vector<std::string>& choices) {
  if (!n.IsScalar()) return "expected " + type_name(type) + ", got " + scalar_text(n);
  try {
    switch (type) {
      case Type::Bool: n.as<bool>(); break;
      case Type::Int: case Type::IntList: n.as<int64_t>(); break;
      case Type::Float: case Type::FloatList: n.as<double>(); break;
      default: break;
    }
  } catch (const YAML::Exception&) {
    const char* what = type == Type::Bool ? "bool (true/false)"
                       : (type == Type::Int || type == Type::IntList) ? "int" : "float";
    return std::string("expected ") + what + ", got " + scalar_text(n);
  }
  if (!choices.empty()) {
    for (const auto& c : choices)
      if (n.Scalar() == c) return "";
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    const std::string near = closest(n.Scalar(), choices);
    return "value " + scalar_text(n) + " is not one of: " + list +
           (near.empty() ? "" : " (did you mean '" + near + "'?)");
  }
  return "";
}

std::string suggestion(const std::string& key, const std::vector<std::string>& candidates) {
  const std::string near = closest(key, candidates);
  if (!near.empty()) return " (did you mean '" + near + "'?)";
  std::string list;
  for (const auto& c : candidates) list += (list.empty() ? "" : ", ") + c;
  return list.empty() ? "" : " (valid keys here: " + list + ")";
}

}  // namespace

Config::Config(const Schema& schema) : schema_(&schema) {
  for (const Option& o : schema.options()) {
    values_[o.path] = YAML::Load(o.default_yaml);
    where_[o.path] = "default";
  }
}

Config Config::load(const Schema& schema, const std::vector<std::string>& files,
                    const std::vector<std::string>& overrides) {
  Config c(schema);
  for (const auto& f : files) c.merge_file(f);
  for (const auto& o : overrides) c.apply_override(o);
  c.check_required();
  return c;
}

void Config::merge_file(const std::string& file) {
  if (!std::filesystem::exists(file)) throw UsageError(file + ": recipe file not found");
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    throw UsageError(file + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  merge_yaml(root, file);
}

void Config::merge_yaml(const YAML::Node& root, const std::string& source) {
  if (!root || root.IsNull()) return;  // an empty recipe is allowed
  if (!root.IsMap()) throw UsageError(at(source, root) + ": a recipe must be a mapping of keys");
  // Depth-first walk: sections recurse, options are assigned, anything else is unknown.
  std::vector<std::pair<std::string, YAML::Node>> stack;
  for (auto it = root.begin(); it != root.end(); ++it)
    stack.emplace_back(it->first.as<std::string>(), it->second);
  while (!stack.empty()) {
    auto [path, node] = stack.back();
    stack.pop_back();
    if (const Option* opt = schema_->find(path)) {
      assign(*opt, node, at(source, node));
    } else if (schema_->is_section(path)) {
      if (!node.IsMap())
        throw UsageError(at(source, node) + ": key '" + path + "' is a section; expected a mapping, got " +
                         scalar_text(node));
      for (auto it = node.begin(); it != node.end(); ++it)
        stack.emplace_back(path + "." + it->first.as<std::string>(), it->second);
    } else {
      throw UsageError(at(source, node) + ": unknown key '" + path + "'" +
                       suggestion(path, schema_->siblings(path)));
    }
  }
}

void Config::assign(const Option& opt, const YAML::Node& value, const std::string& source) {
  const std::string key = "key '" + opt.path + "'";
  auto fail = [&](const std::string& why) { throw UsageError(source + ": " + key + ": " + why); };
  if (value.IsNull()) {
    if (opt.required) fail("is required and cannot be null");
  } else if (opt.type == Type::Records) {
    if (!value.IsSequence()) fail("expected a list of records, got " + scalar_text(value));
    std::vector<std::string> names;
    for (const Option& f : opt.fields) names.push_back(f.path);
    YAML::Node resolved(YAML::NodeType::Sequence);
    for (size_t i = 0; i < value.size(); ++i) {
      const YAML::Node rec = value[i];
      const std::string rec_at = opt.path + "[" + std::to_string(i) + "]";
      if (!rec.IsMap()) fail(rec_at + ": expected a mapping, got " + scalar_text(rec));
      YAML::Node out(YAML::NodeType::Map);
      for (auto it = rec.begin(); it != rec.end(); ++it) {
        const std::string name = it->first.as<std::string>();
        const Option* f = nullptr;
        for (const Option& cand : opt.fields) if (cand.path == name) f = &cand;
        if (!f) fail(rec_at + ": unknown field '" + name + "'" + suggestion(name, names));
        const std::string err = f->type == Type::StringList || f->type == Type::FloatList
                                    ? (it->second.IsSequence() ? "" : "expected a list")
                                    : check_scalar(f->type, it->second, f->choices);
        if (!err.empty()) fail(rec_at + "." + name + ": " + err);
        out[name] = it->second;
      }
      for (const Option& f : opt.fields) {
        if (out[f.path]) continue;
        if (f.default_yaml == "~") fail(rec_at + ": missing required field '" + f.path + "'");
        out[f.path] = YAML::Load(f.default_yaml);
      }
      resolved.push_back(out);
    }
    if (resolved.size() == 0) resolved.SetStyle(YAML::EmitterStyle::Flow);
    values_[opt.path] = resolved;
    where_[opt.path] = source;
    return;
  } else if (opt.type == Type::IntList || opt.type == Type::FloatList || opt.type == Type::StringList) {
    if (!value.IsSequence()) fail("expected " + type_name(opt.type) + ", got " + scalar_text(value));
    for (size_t i = 0; i < value.size(); ++i) {
      const std::string err = check_scalar(opt.type, value[i], opt.choices);
      if (!err.empty()) fail("element " + std::to_string(i) + ": " + err);
    }
  } else {
    const std::string err = check_scalar(opt.type, value, opt.choices);
    if (!err.empty()) fail(err);
  }
  values_[opt.path] = YAML::Clone(value);
  where_[opt.path] = source;
}

const Option& Config::option_or_throw(const std::string& path, const std::string& source) const {
  const Option* opt = schema_->find(path);
  if (!opt)
    throw UsageError(source + ": unknown key '" + path + "'" + suggestion(path, schema_->siblings(path)));
  return *opt;
}

void Config::apply_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError("--set '" + assignment + "': expected key.path=value");
  set(assignment.substr(0, eq), assignment.substr(eq + 1));
}

void Config::set(const std::string& path, const std::string& value_yaml) {
  const Option& opt = option_or_throw(path, "--set");
  YAML::Node value;
  try {
    value = YAML::Load(value_yaml);
  } catch (const YAML::Exception& e) {
    throw UsageError("--set " + path + ": value '" + value_yaml + "' is not valid YAML: " + e.msg);
  }
  // A bare string like "a:b" may parse as a map; strings keep their literal text.
  if (opt.type == Type::String && !value.IsScalar() && !value.IsNull()) value = YAML::Node(value_yaml);
  assign(opt, value, "--set");
}

void Config::check_required() const {
  std::string missing;
  for (const Option& o : schema_->options())
    if (o.required && !has(o.path)) missing += (missing.empty() ? "" : ", ") + o.path;
  if (!missing.empty())
    throw UsageError(schema_->name() + ": required key(s) not set: " + missing +
                     " (set them in the recipe or with --set key=value)");
}

bool Config::has(const std::string& path) const {
  auto it = values_.find(path);
  return it != values_.end() && it->second && !it->second.IsNull();
}

template <typename T>
T Config::get(const std::string& path) const {
  auto it = values_.find(path);
  if (it == values_.end()) throw Error("internal: option '" + path + "' is not declared");
  if (!it->second || it->second.IsNull())
    throw UsageError("key '" + path + "' is not set (" + where(path) + ")");
  try {
    return it->second.as<T>();
  } catch (const YAML::Exception&) {
    throw UsageError(where(path) + ": key '" + path + "' has the wrong type");
  }
}

template bool Config::get<bool>(const std::string&) const;
template int64_t Config::get<int64_t>(const std::string&) const;
template int Config::get<int>(const std::string&) const;
template double Config::get<double>(const std::string&) const;
template std::string Config::get<std::string>(const std::string&) const;
template std::vector<std::string> Config::get<std::vector<std::string>>(const std::string&) const;
template std::vector<double> Config::get<std::vector<double>>(const std::string&) const;
template std::vector<int64_t> Config::get<std::vector<int64_t>>(const std::string&) const;

std::vector<Record> Config::records(const std::string& path) const {
  std::vector<Record> out;
  auto it = values_.find(path);
  if (it == values_.end() || !it->second.IsSequence()) return out;
  for (size_t i = 0; i < it->second.size(); ++i)
    out.emplace_back(it->second[i], where(path) + " " + path + "[" + std::to_string(i) + "]");
  return out;
}

std::string Config::where(const std::string& path) const {
  auto it = where_.find(path);
  return it == where_.end() ? "unknown" : it->second;
}

std::string Config::dump() const {
  YAML::Node root(YAML::NodeType::Map);
  for (const Option& o : schema_->options()) {
    // Rebuild the nested structure from the dotted path.
    std::vector<std::string> parts;
    std::stringstream ss(o.path);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    YAML::Node cur = root;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      if (!cur[parts[i]]) cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      cur.reset(cur[parts[i]]);
    }
    cur[parts.back()] = values_.at(o.path);
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

}  // namespace xd::config

#include "xdistill/config/schema.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "xdistill/util/error.h"

namespace xd::config {

std::string type_name(Type t) {
  switch (t) {
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "string";
    case Type::IntList: return "list of int";
    case Type::FloatList: return "list of float";
    case Type::StringList: return "list of string";
    case Type::Records: return "list of records";
  }
  return "?";
}

Option field(const std::string& name, Type type, const std::string& default_yaml,
             const std::string& help, std::vector<std::string> choices) {
  Option o;
  o.path = name;
  o.type = type;
  o.default_yaml = default_yaml;
  o.help = help;
  o.choices = std::move(choices);
  return o;
}

Schema& Schema::add(const std::string& path, Type type, const std::string& default_yaml,
                    const std::string& help, std::vector<std::string> choices) {
  if (index_.count(path)) throw Error("schema '" + name_ + "': option '" + path + "' declared twice");
  Option o = field(path, type, default_yaml, help, std::move(choices));
  index_[path] = options_.size();
  options_.push_back(std::move(o));
  return *this;
}

Schema& Schema::add_required(const std::string& path, Type type, const std::string& help,
                             std::vector<std::string> choices) {
  add(path, type, "~", help, std::move(choices));
  options_.back().required = true;
  return *this;
}

Schema& Schema::add_records(const std::string& path, std::vector<Option> fields,
                            const std::string& help, const std::string& default_yaml) {
  add(path, Type::Records, default_yaml, help);
  options_.back().fields = std::move(fields);
  return *this;
}

Schema& Schema::include(const Schema& other) {
  for (const Option& o : other.options_) {
    if (index_.count(o.path))
      throw Error("schema '" + name_ + "': option '" + o.path + "' declared twice");
    index_[o.path] = options_.size();
    options_.push_back(o);
  }
  return *this;
}

const Option* Schema::find(const std::string& path) const {
  auto it = index_.find(path);
  return it == index_.end() ? nullptr : &options_[it->second];
}

bool Schema::is_section(const std::string& path) const {
  const std::string prefix = path + ".";
  auto it = index_.lower_bound(prefix);
  return it != index_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

std::vector<std::string> Schema::siblings(const std::string& path) const {
  const auto dot = path.rfind('.');
  const std::string parent = dot == std::string::npos ? "" : path.substr(0, dot + 1);
  std::set<std::string> out;
  for (const Option& o : options_) {
    if (o.path.compare(0, parent.size(), parent) != 0) continue;
    const std::string rest = o.path.substr(parent.size());
    out.insert(parent + rest.substr(0, rest.find('.')));
  }
  return {out.begin(), out.end()};
}

std::string Schema::describe() const {
  std::ostringstream os;
  std::string section = "\x01";
  for (const Option& o : options_) {
    const auto dot = o.path.rfind('.');
    const std::string sec = dot == std::string::npos ? "" : o.path.substr(0, dot);
    if (sec != section) {
      section = sec;
      os << "\n[" << (sec.empty() ? "top level" : sec) << "]\n";
    }
    os << "  " << o.path << " (" << type_name(o.type) << ", "
       << (o.required ? std::string("required") : "default " + o.default_yaml) << ")";
    if (!o.choices.empty()) {
      os << " one of:";
      for (const auto& c : o.choices) os << " " << c;
    }
    os << "\n      " << o.help << "\n";
    for (const Option& f : o.fields)
      os << "      - " << f.path << " (" << type_name(f.type) << ", default " << f.default_yaml
         << "): " << f.help << "\n";
  }
  return os.str();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
      // Adjacent transposition ("lr_decya" for "lr_decay") counts as one edit.
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev[j - 1]);  // approximation of Damerau's rule
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = static_cast<size_t>(-1);
  for (const auto& c : candidates) {
    const size_t d = edit_distance(key, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Plausible typo: at most a third of the key's length, and at least 1 edit allowed.
  const size_t limit = std::max<size_t>(2, key.size() / 3);
  return best_d <= limit ? best : std::string();
}

}  // namespace xd::config

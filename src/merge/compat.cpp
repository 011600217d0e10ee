// Merge input compatibility: tensors, config.json, tokenizer.
#include "xdistill/merge/compat.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "xdistill/merge/content_hash.h"
#include "xdistill/merge/convert.h"
#include "xdistill/util/error.h"

namespace xd::merge {
namespace stdfs = std::filesystem;
using nlohmann::json;

const std::vector<std::string>& ignored_config_fields() {
  static const std::vector<std::string> fields = {"_name_or_path", "transformers_version", "torch_dtype",
                                                  "dtype", "_commit_hash", "_attn_implementation_autoset"};
  return fields;
}

const std::vector<std::string>& tokenizer_files() {
  static const std::vector<std::string> files = {"tokenizer.json", "tokenizer.model"};
  return files;
}

namespace {
constexpr size_t kMaxListed = 30;

std::string describe(const io::TensorInfo& t) {
  return std::string(io::dtype_name(t.dtype)) + " " + io::shape_string(t.shape);
}

void compare_tensors(const MergeInput& ref, const MergeInput& in, std::vector<std::string>& problems) {
  const io::Checkpoint& a = ref.checkpoint;
  const io::Checkpoint& b = in.checkpoint;
  for (const auto& name : a.names()) {
    if (!b.has(name)) {
      problems.push_back("tensor '" + name + "': missing in " + in.label + ", present in " + ref.label);
      continue;
    }
    const io::TensorInfo& ta = a.info(name);
    const io::TensorInfo& tb = b.info(name);
    if (ta.dtype != tb.dtype || ta.shape != tb.shape) {
      problems.push_back("tensor '" + name + "': " + in.label + " has " + describe(tb) + ", " + ref.label +
                         " has " + describe(ta));
    } else if (!is_mergeable_float(ta.dtype) && std::memcmp(a.data(name), b.data(name), ta.nbytes()) != 0) {
      problems.push_back("tensor '" + name + "' (" + io::dtype_name(ta.dtype) + ") differs between " +
                         ref.label + " and " + in.label + "; only BF16/F16/F32 tensors are merged, others must be equal");
    }
  }
  for (const auto& name : b.names())
    if (!a.has(name)) problems.push_back("tensor '" + name + "': unexpected in " + in.label + ", absent from " + ref.label);
}

json read_config(const MergeInput& in) {
  const stdfs::path p = stdfs::path(in.dir) / "config.json";
  try {
    std::ifstream f(p);
    json j = json::parse(f);
    if (!j.is_object()) throw Error(p.string() + ": not a JSON object");
    for (const auto& field : ignored_config_fields()) j.erase(field);
    return j;
  } catch (const json::exception& e) {
    throw Error(p.string() + ": not valid JSON: " + e.what());
  }
}

// Every field path where two JSON values differ ("text_config.hidden_size").
void diff_json(const json& a, const json& b, const std::string& path, std::vector<std::string>& out) {
  if (a.is_object() && b.is_object()) {
    std::vector<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.push_back(it.key());
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) keys.push_back(it.key());
    for (const auto& k : keys) {
      const std::string sub = path.empty() ? k : path + "." + k;
      if (!a.contains(k) || !b.contains(k))
        out.push_back(sub + "|" + (a.contains(k) ? a[k].dump() : "(absent)") + "|" +
                      (b.contains(k) ? b[k].dump() : "(absent)"));
      else
        diff_json(a[k], b[k], sub, out);
    }
  } else if (a != b) {
    out.push_back(path + "|" + a.dump() + "|" + b.dump());
  }
}

void compare_configs(const std::vector<MergeInput>& inputs, std::vector<std::string>& problems) {
  auto has_config = [](const MergeInput& in) { return stdfs::is_regular_file(stdfs::path(in.dir) / "config.json"); };
  const bool ref_has = has_config(inputs[0]);
  const json ref = ref_has ? read_config(inputs[0]) : json();
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (has_config(inputs[i]) != ref_has) {
      problems.push_back("config.json: present in " + (ref_has ? inputs[0].label : inputs[i].label) +
                         ", missing in " + (ref_has ? inputs[i].label : inputs[0].label));
      continue;
    }
    if (!ref_has) continue;
    std::vector<std::string> diffs;
    diff_json(ref, read_config(inputs[i]), "", diffs);
    for (const auto& d : diffs) {
      const size_t p1 = d.find('|'), p2 = d.find('|', p1 + 1);
      problems.push_back("config.json field '" + d.substr(0, p1) + "': " + inputs[i].label + " has " +
                         d.substr(p2 + 1) + ", " + inputs[0].label + " has " + d.substr(p1 + 1, p2 - p1 - 1));
    }
  }
}

void compare_tokenizers(const std::vector<MergeInput>& inputs, std::vector<std::string>& problems) {
  for (const auto& file : tokenizer_files()) {
    auto path_of = [&](const MergeInput& in) { return stdfs::path(in.dir) / file; };
    const bool ref_has = stdfs::is_regular_file(path_of(inputs[0]));
    const std::string ref_digest = ref_has ? file_digest(path_of(inputs[0]).string()) : "";
    for (size_t i = 1; i < inputs.size(); ++i) {
      const bool has = stdfs::is_regular_file(path_of(inputs[i]));
      if (has != ref_has)
        problems.push_back(file + ": present in " + (ref_has ? inputs[0].label : inputs[i].label) + ", missing in " +
                           (ref_has ? inputs[i].label : inputs[0].label));
      else if (has && file_digest(path_of(inputs[i]).string()) != ref_digest)
        problems.push_back(file + ": " + inputs[i].label + " has a different tokenizer than " + inputs[0].label +
                           " (file contents differ)");
    }
  }
}
}  // namespace

void check_compatible(const std::vector<MergeInput>& inputs) {
  if (inputs.empty()) throw UsageError("merge: no experts given");
  std::vector<std::string> problems;
  for (size_t i = 1; i < inputs.size(); ++i) compare_tensors(inputs[0], inputs[i], problems);
  compare_configs(inputs, problems);
  compare_tokenizers(inputs, problems);
  if (problems.empty()) return;
  std::string msg = "merge: the inputs are not compatible (" + std::to_string(problems.size()) + " problem" +
                    (problems.size() > 1 ? "s" : "") + "):";
  for (size_t i = 0; i < problems.size() && i < kMaxListed; ++i) msg += "\n  - " + problems[i];
  if (problems.size() > kMaxListed) msg += "\n  - ... and " + std::to_string(problems.size() - kMaxListed) + " more";
  throw Error(msg);
}

}  // namespace xd::merge

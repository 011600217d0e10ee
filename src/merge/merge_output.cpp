// Extras of a merged checkpoint directory: copied files and the merge manifest.
#include "merge_output.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "xdistill/merge/content_hash.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::merge {
namespace stdfs = std::filesystem;
using nlohmann::ordered_json;

std::map<std::string, std::string> output_metadata(const io::Checkpoint& reference) {
  auto meta = reference.metadata();
  meta["format"] = "pt";
  return meta;
}

namespace {

bool is_weight_or_private(const std::string& name) {
  auto ends_with = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return name.empty() || name[0] == '.' || ends_with(".safetensors") || ends_with(".bin") || ends_with(".pt") ||
         ends_with(".pth") || ends_with(".ckpt") || ends_with(".gguf") || ends_with(".index.json") ||
         name == "merge_manifest.json";
}

const char* hf_dtype_name(const std::string& choice) {
  if (choice == "bf16" || choice == "bfloat16") return "bfloat16";
  if (choice == "f16" || choice == "float16") return "float16";
  return "float32";
}

void copy_config(const stdfs::path& from, const stdfs::path& to, const std::string& dtype) {
  if (dtype == "auto") {
    stdfs::copy_file(from, to);
    return;
  }
  ordered_json config = ordered_json::parse(fs::read_text(from));
  config["torch_dtype"] = hf_dtype_name(dtype);
  if (config.contains("dtype")) config["dtype"] = hf_dtype_name(dtype);
  fs::write_atomic(to, config.dump(2) + "\n");
}

// Copies the first expert's extra files; warns about ones that differ between
// experts (tokenizer.json and config.json were checked already).
std::vector<std::string> copy_extras(const stdfs::path& dir, const MergeSpec& spec,
                                     const std::vector<MergeInput>& inputs) {
  std::vector<std::string> copied;
  for (const auto& entry : stdfs::directory_iterator(inputs[0].dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || is_weight_or_private(name)) continue;
    if (name == "config.json")
      copy_config(entry.path(), dir / name, spec.dtype);
    else
      stdfs::copy_file(entry.path(), dir / name);
    copied.push_back(name);
    if (entry.file_size() > (64u << 20)) continue;
    const std::string digest = file_digest(entry.path().string());
    for (size_t i = 1; i < inputs.size(); ++i) {
      const stdfs::path other = stdfs::path(inputs[i].dir) / name;
      if (stdfs::is_regular_file(other) && file_digest(other.string()) != digest)
        log::warn("merge: ", name, " differs between ", inputs[0].label, " and ", inputs[i].label,
                  "; copied from ", inputs[0].label);
    }
  }
  return copied;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

void write_merge_extras(const std::string& dir, const MergeSpec& spec, const std::vector<MergeInput>& inputs,
                        const MergeResult& result, const std::vector<double>& densities,
                        const std::vector<std::string>& digests, const std::vector<std::string>& shards) {
  const std::vector<std::string> copied = copy_extras(dir, spec, inputs);
  ordered_json manifest;
  manifest["format"] = "xdistill-merge-manifest/1";
  manifest["xdistill_version"] = XDISTILL_VERSION;
  manifest["created"] = utc_now();
  manifest["method"] = method_name(spec.method);
  ordered_json parameters;
  parameters["normalize"] = spec.normalize;
  if (uses_density(spec.method) && spec.density) parameters["density"] = *spec.density;
  if (spec.method == Method::Dare) parameters["seed"] = spec.seed;
  manifest["parameters"] = parameters;
  manifest["dtype"] = spec.dtype;
  manifest["content_hash"] =
      "xxh64 over 1 MiB blocks per tensor, then over tensors in name order (see include/xdistill/merge/content_hash.h)";
  ordered_json list = ordered_json::array();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const bool expert = i < spec.experts.size();
    ordered_json in;
    in["role"] = expert ? "expert" : "base";
    in["path"] = stdfs::absolute(inputs[i].dir).string();
    if (expert) {
      if (spec.experts[i].weight) in["weight_given"] = *spec.experts[i].weight;
      in["weight"] = result.weights[i];
      if (!densities.empty()) in["density"] = densities[i];
    }
    in["tensors_hash"] = digests[i];
    ordered_json files = ordered_json::object();
    for (const auto& name : {"config.json", "tokenizer.json", "tokenizer.model"}) {
      const stdfs::path p = stdfs::path(inputs[i].dir) / name;
      if (stdfs::is_regular_file(p)) files[name] = file_digest(p.string());
    }
    in["files_hash"] = files;
    list.push_back(in);
  }
  manifest["inputs"] = list;
  ordered_json output;
  output["tensors"] = result.tensors;
  output["bytes"] = result.bytes_written;
  output["shards"] = shards;
  output["copied_files"] = copied;
  manifest["output"] = output;
  fs::write_atomic(stdfs::path(dir) / "merge_manifest.json", manifest.dump(2) + "\n");
}

}  // namespace xd::merge

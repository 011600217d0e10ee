#include "xdistill/merge/recipe.h"

#include "xdistill/merge/options.h"
#include "xdistill/util/error.h"

namespace xd::merge {

namespace {
// mergekit nests a model's weight and density under `parameters:`; our records
// are flat. Anything else under a model's parameters is left for the schema to reject.
void flatten_model_parameters(YAML::Node root, const std::string& file) {
  if (!root.IsMap() || !root["models"] || !root["models"].IsSequence()) return;
  for (YAML::Node model : root["models"]) {
    if (!model.IsMap() || !model["parameters"]) continue;
    const YAML::Node params = model["parameters"];
    if (!params.IsMap()) throw UsageError(file + ": models[].parameters must be a mapping");
    for (auto it = params.begin(); it != params.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      if (model[key]) throw UsageError(file + ": '" + key + "' given both in a model and in its parameters");
      model[key] = it->second;
    }
    model.remove("parameters");
  }
}
}  // namespace

config::Config load_recipe(const std::vector<std::string>& files, const std::vector<std::string>& overrides) {
  config::Config cfg(recipe_schema());
  for (const auto& file : files) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(file);
    } catch (const YAML::Exception& e) {
      throw UsageError(file + ": " + e.what());
    }
    flatten_model_parameters(root, file);
    cfg.merge_yaml(root, file);
  }
  for (const auto& o : overrides) cfg.apply_override(o);
  return cfg;
}

MergeSpec spec_from_config(const config::Config& cfg) {
  MergeSpec spec;
  for (const auto& rec : cfg.records("models")) {
    ExpertSpec e;
    e.dir = rec.get<std::string>("model");
    if (rec.has("weight")) e.weight = rec.get<double>("weight");
    if (rec.has("density")) e.density = rec.get<double>("density");
    spec.experts.push_back(e);
  }
  if (cfg.has("base_model")) spec.base = cfg.get<std::string>("base_model");
  spec.method = parse_method(cfg.get<std::string>("merge_method"));
  if (cfg.has("parameters.density")) spec.density = cfg.get<double>("parameters.density");
  const int64_t seed = cfg.get<int64_t>("parameters.seed");
  if (seed < 0) throw UsageError("merge: parameters.seed must be >= 0");
  spec.seed = static_cast<uint64_t>(seed);
  spec.normalize = cfg.get<bool>("parameters.normalize");
  spec.dtype = cfg.get<std::string>("dtype");
  if (cfg.has("out")) spec.out = cfg.get<std::string>("out");
  const int64_t shard = cfg.get<int64_t>("max_shard_size");
  if (shard <= 0) throw UsageError("merge: max_shard_size must be positive");
  spec.max_shard_bytes = static_cast<uint64_t>(shard);
  spec.threads = static_cast<int>(cfg.get<int64_t>("threads"));
  return spec;
}

}  // namespace xd::merge

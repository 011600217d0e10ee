// `xdistill merge`: flags or a mergekit-style recipe (flags win) -> run_merge.
#include <iomanip>
#include <iostream>
#include <sstream>
#include <memory>

#include "xdistill/cli/commands.h"
#include "xdistill/merge/merge.h"
#include "xdistill/merge/recipe.h"
#include "xdistill/util/error.h"

namespace xd::cli {

namespace {
struct MergeArgs {
  RecipeArgs recipe;
  std::vector<std::string> experts;
  std::vector<double> weights;
  std::string base, method, dtype, out;
  std::vector<double> density;  // zero or one value
  std::vector<int64_t> seed, threads, max_shard;
  bool overwrite = false;
};

// Full precision: std::to_string would round a weight like 1/3 to 6 decimals.
std::string num(double v) {
  std::ostringstream os;
  os << std::setprecision(17) << v;
  return os.str();
}

std::string yaml_quote(const std::string& s) {
  std::string q = "\"";
  for (char c : s) q += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return q + "\"";
}

// Writes the flags over the recipe's values.
void apply_flags(const MergeArgs& a, config::Config& cfg) {
  if (!a.experts.empty()) {
    if (!a.weights.empty() && a.weights.size() != a.experts.size())
      throw UsageError("merge: " + std::to_string(a.weights.size()) + " weights for " +
                       std::to_string(a.experts.size()) + " experts");
    std::string list = "[";
    for (size_t i = 0; i < a.experts.size(); ++i) {
      list += (i ? ", " : "") + std::string("{model: ") + yaml_quote(a.experts[i]);
      if (!a.weights.empty()) list += ", weight: " + num(a.weights[i]);
      list += "}";
    }
    cfg.set("models", list + "]");
  } else if (!a.weights.empty()) {  // weights for the recipe's models
    auto models = cfg.records("models");
    if (models.size() != a.weights.size())
      throw UsageError("merge: " + std::to_string(a.weights.size()) + " weights for " +
                       std::to_string(models.size()) + " experts of the recipe");
    std::string list = "[";
    for (size_t i = 0; i < models.size(); ++i) {
      list += (i ? ", " : "") + std::string("{model: ") + yaml_quote(models[i].get<std::string>("model")) +
              ", weight: " + num(a.weights[i]);
      if (models[i].has("density")) list += ", density: " + num(models[i].get<double>("density"));
      list += "}";
    }
    cfg.set("models", list + "]");
  }
  if (!a.base.empty()) cfg.set("base_model", yaml_quote(a.base));
  if (!a.method.empty()) cfg.set("merge_method", a.method);
  if (!a.dtype.empty()) cfg.set("dtype", a.dtype);
  if (!a.out.empty()) cfg.set("out", yaml_quote(a.out));
  if (!a.density.empty()) cfg.set("parameters.density", num(a.density[0]));
  if (!a.seed.empty()) cfg.set("parameters.seed", std::to_string(a.seed[0]));
  if (!a.threads.empty()) cfg.set("threads", std::to_string(a.threads[0]));
  if (!a.max_shard.empty()) cfg.set("max_shard_size", std::to_string(a.max_shard[0]));
}
}  // namespace

void add_merge_command(CLI::App& app) {
  auto a = std::make_shared<MergeArgs>();
  auto* cmd = app.add_subcommand(
      "merge", "merge domain experts into one student (linear, task_arithmetic, ties, dare); streams tensor by tensor");
  add_recipe_options(*cmd, a->recipe, /*required=*/false);
  cmd->add_option("--experts", a->experts, "expert checkpoint directories")->expected(1, -1);
  cmd->add_option("--weights", a->weights, "one weight per expert (>= 0; default uniform; normalised to sum 1)")
      ->expected(1, -1);
  cmd->add_option("--base", a->base, "theta(0), needed by task_arithmetic, ties and dare");
  cmd->add_option("--method", a->method, "linear | task_arithmetic | ties | dare (default linear)")
      ->check(CLI::IsMember({"linear", "task_arithmetic", "ties", "dare"}));
  cmd->add_option("--density", a->density, "fraction of task-vector entries kept (ties, dare)")->expected(1);
  cmd->add_option("--seed", a->seed, "seed of dare's drop masks")->expected(1);
  cmd->add_option("--dtype", a->dtype, "output dtype: auto (as stored) | bf16 | f16 | f32")
      ->check(CLI::IsMember({"auto", "bf16", "bfloat16", "f16", "float16", "f32", "float32"}));
  cmd->add_option("-o,--out", a->out, "output directory (appears only when complete)");
  cmd->add_option("--threads", a->threads, "threads (0 = all cores)")->expected(1);
  cmd->add_option("--max-shard-size", a->max_shard, "largest output shard in bytes")->expected(1);
  cmd->add_flag("--overwrite", a->overwrite, "replace an existing output directory");
  cmd->callback([a] {
    config::Config cfg = merge::load_recipe(a->recipe.files, a->recipe.overrides);
    apply_flags(*a, cfg);
    merge::MergeSpec spec = merge::spec_from_config(cfg);
    spec.overwrite = a->overwrite;
    const merge::MergeResult r = merge::run_merge(spec);
    std::cout << "merged " << spec.experts.size() << " experts (" << merge::method_name(spec.method) << ", weights";
    for (double w : r.weights) std::cout << " " << w;
    std::cout << ") into " << spec.out << "\n";
  });
}

}  // namespace xd::cli

// Every option of a merge recipe. The layout is mergekit's, which users know:
//   merge_method: ties
//   base_model: runs/theta0
//   models:
//     - model: runs/math
//       parameters: {weight: 0.35, density: 0.5}
//   parameters: {density: 0.5, normalize: true}
//   dtype: bfloat16
// A model's `parameters: {weight, density}` is read as the record fields weight
// and density (src/merge/recipe.cpp flattens it); the flat form works too.
#include "xdistill/merge/options.h"

namespace xd::merge {
using config::field;
using config::Schema;
using config::Type;

const Schema& recipe_schema() {
  static const Schema schema = [] {
    Schema s("merge recipe");
    s.add("merge_method", Type::String, "linear",
          "linear: sum_i w_i theta_i (the paper); task_arithmetic, ties, dare: task vectors against base_model",
          {"linear", "task_arithmetic", "ties", "dare"});
    s.add("base_model", Type::String, "~", "theta(0), the seed the experts were trained from (task-vector methods)");
    s.add_records("models",
                  {field("model", Type::String, "~", "expert checkpoint directory"),
                   field("weight", Type::Float, "null", "lambda_i >= 0 (all or none; none = uniform)"),
                   field("density", Type::Float, "null", "fraction of task-vector entries kept (ties, dare); default parameters.density")},
                  "the experts, in order (or --experts)");
    s.add("parameters.density", Type::Float, "~", "default density for ties / dare, in (0, 1]");
    s.add("parameters.seed", Type::Int, "0", "seed of dare's drop masks");
    s.add("parameters.normalize", Type::Bool, "true", "rescale the weights to sum to 1 (warns when they did not)");
    s.add("dtype", Type::String, "auto", "output float dtype; auto keeps each tensor's stored dtype",
          {"auto", "bf16", "bfloat16", "f16", "float16", "f32", "float32"});
    s.add("out", Type::String, "~", "output directory (or --out); created only when the merge is complete");
    s.add("max_shard_size", Type::Int, "5368709120", "largest output shard in bytes (then an index is written)");
    s.add("threads", Type::Int, "0", "threads for the element loops (0 = all cores)");
    return s;
  }();
  return schema;
}

}  // namespace xd::merge

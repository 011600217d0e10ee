// The recipe kinds that `config show` and `config options` know.
#include "xdistill/cli/commands.h"
#include "xdistill/data/options.h"
#include "xdistill/eval/task.h"
#include "xdistill/merge/options.h"
#include "xdistill/train/options.h"
#include "xdistill/util/error.h"

namespace xd::cli {

std::vector<std::string> recipe_kinds() { return {"train", "data", "merge", "task"}; }

const config::Schema& recipe_schema(const std::string& kind) {
  if (kind == "train") return train::recipe_schema();
  if (kind == "data") return data::recipe_schema();
  if (kind == "merge") return merge::recipe_schema();
  if (kind == "task") return eval::task_schema();
  throw UsageError("unknown recipe kind '" + kind + "' (known: train, data, merge, task)");
}

}  // namespace xd::cli

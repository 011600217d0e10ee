// Every option of a merge recipe (mergekit's layout).
#include "xdistill/merge/options.h"

namespace xd::merge {
using config::field;
using config::Schema;
using config::Type;

const Schema& recipe_schema() {
  static const Schema schema = [] {
    Schema s("merge recipe");
    s.add("merge_method", Type::String, "linear", "linear | task_arithmetic | ties | dare",
          {"linear", "task_arithmetic", "ties", "dare"});
    s.add("base_model", Type::String, "~", "theta(0), needed by the task-vector methods");
    return s;
  }();
  return schema;
}

}  // namespace xd::merge

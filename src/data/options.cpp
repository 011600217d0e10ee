// Every option of a data-preparation recipe (`xdistill data prepare --config data.yaml`).
#include "xdistill/data/options.h"

namespace xd::data {
using config::field;
using config::Schema;
using config::Type;

const Schema& recipe_schema() {
  static const Schema schema = [] {
    Schema s("data recipe");
    s.add_required("tokenizer", Type::String, "tokenizer directory (tokenizer.json + tokenizer_config.json)");
    s.add_required("output", Type::String, "output directory of the shard set");
    return s;
  }();
  return schema;
}

}  // namespace xd::data

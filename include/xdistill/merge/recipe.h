// Merge recipes (mergekit layout, see src/merge/options.cpp) to a MergeSpec.
#pragma once
#include <string>
#include <vector>

#include "xdistill/config/config.h"
#include "xdistill/merge/merge.h"

namespace xd::merge {

// Loads recipe files (later wins; mergekit's per-model `parameters:` maps are
// flattened into the record) and applies --set overrides.
config::Config load_recipe(const std::vector<std::string>& files, const std::vector<std::string>& overrides);

// The spec a resolved recipe describes (overwrite stays false).
MergeSpec spec_from_config(const config::Config& cfg);

}  // namespace xd::merge

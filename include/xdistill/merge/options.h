// The declared options of a merge recipe (see src/merge/options.cpp).
#pragma once
#include "xdistill/config/schema.h"

namespace xd::merge {
const config::Schema& recipe_schema();
}

// The declared options of a data recipe (see src/data/options.cpp).
#pragma once
#include "xdistill/config/schema.h"

namespace xd::data {
const config::Schema& recipe_schema();
}

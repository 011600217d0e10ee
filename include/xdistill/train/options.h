// The declared options of a train recipe (see src/train/options.cpp).
#pragma once
#include "xdistill/config/schema.h"

namespace xd::train {
const config::Schema& recipe_schema();
}

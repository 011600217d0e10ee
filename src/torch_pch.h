// Precompiled for every torch-heavy translation unit: parsing torch's headers
// dominates their compile time on small machines.
#pragma once
#include <torch/torch.h>

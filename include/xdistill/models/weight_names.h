// Hugging Face tensor names <-> our module paths, through one declarative table
// (weight_names.cpp). The reverse direction is derived from the same rows.
//
// Rows use two wildcards: {i} (a layer number) and {rest} (any suffix), so that a
// mixer's own sub-modules map without listing them: a student's extra tensor
// "layers.3.mixer.feature_q.weight" is saved as "model.layers.3.self_attn.feature_q.weight".
// Names that match no row are kept unchanged in both directions.
#pragma once
#include <string>

#include "xdistill/models/model_config.h"

namespace xd::models {

// "model.layers.0.input_layernorm.weight" -> "layers.0.mixer_norm.weight" (pre-norm),
// "model.embed_tokens.weight" -> "embed".
std::string to_internal_name(const std::string& hf_name, NormPlacement placement);
// The inverse: "layers.0.mixer_norm.weight" -> "model.layers.0.input_layernorm.weight".
std::string to_hf_name(const std::string& internal_name, NormPlacement placement);

}  // namespace xd::models

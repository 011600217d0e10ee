// The merged directory's extras: safetensors metadata, copied config and
// tokenizer files, and merge_manifest.json (private to src/merge).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "xdistill/merge/compat.h"
#include "xdistill/merge/merge.h"

namespace xd::merge {

// The experts' __metadata__, with "format": "pt" (transformers requires it).
std::map<std::string, std::string> output_metadata(const io::Checkpoint& reference);

// Copies every non-weight file of the first expert (config, tokenizer, generation
// config, chat template) into `dir`, writing the output dtype into config.json
// when it was forced, and writes merge_manifest.json: the inputs with content
// digests, the weights and densities as used, the method and its parameters.
void write_merge_extras(const std::string& dir, const MergeSpec& spec, const std::vector<MergeInput>& inputs,
                        const MergeResult& result, const std::vector<double>& densities,
                        const std::vector<std::string>& digests, const std::vector<std::string>& shards);

}  // namespace xd::merge

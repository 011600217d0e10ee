// Device selection shared by every command: "auto" means CUDA when present.
#pragma once
#include <string>

namespace c10 { struct Device; }

namespace xd::runtime {

// Whether this build has CUDA kernels and a CUDA device is visible at run time.
bool cuda_available();
// Resolves "auto" | "cpu" | "cuda" | "cuda:N"; "cuda" without a GPU is an xd::Error.
std::string resolve_device(const std::string& requested);
// One line: "cuda:0 NVIDIA H200 (139.8 GiB)" or "cpu (N threads)".
std::string describe_device(const std::string& device);

}  // namespace xd::runtime

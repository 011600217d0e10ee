#include "xdistill/runtime/device.h"

#include <torch/torch.h>

#include "xdistill/util/error.h"

#ifdef XDISTILL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace xd::runtime {

bool cuda_available() { return torch::cuda::is_available(); }

std::string resolve_device(const std::string& requested) {
  if (requested == "auto") return cuda_available() ? "cuda" : "cpu";
  if (requested == "cpu") return requested;
  if (requested.rfind("cuda", 0) == 0) {
    if (!cuda_available()) throw Error("device '" + requested + "' requested but no CUDA device is available");
    return requested;
  }
  throw UsageError("device '" + requested + "' is not one of auto, cpu, cuda, cuda:N");
}

std::string describe_device(const std::string& device) {
  if (device.rfind("cuda", 0) == 0) {
#ifdef XDISTILL_WITH_CUDA
    int idx = 0;
    cudaGetDevice(&idx);
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, idx) == cudaSuccess)
      return device + " " + prop.name + " (" +
             std::to_string(prop.totalGlobalMem / (1024.0 * 1024 * 1024)).substr(0, 5) + " GiB)";
#endif
    return device;
  }
  return "cpu (" + std::to_string(torch::get_num_threads()) + " threads)";
}

}  // namespace xd::runtime

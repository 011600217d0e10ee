// ProcessGroupNCCL construction, compiled only in CUDA builds: its header pulls in
// the CUDA runtime and NCCL.
#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "backends.h"

namespace xd::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  // The prefix keeps NCCL's keys apart from ours in the shared store.
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("xd/nccl/", store);
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, options);
}

}  // namespace xd::dist::detail

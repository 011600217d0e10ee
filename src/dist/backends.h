// Internal to src/dist: the c10d backend factories. Only process_group.cpp and
// nccl_backend.cpp include c10d headers (they are heavy to compile).
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace xd::dist::detail {

// Defined in nccl_backend.cpp (CUDA builds) or process_group.cpp (stub elsewhere).
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout);

}  // namespace xd::dist::detail

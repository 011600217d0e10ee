// CUDA graphs and memory accounting: the only CUDA-specific code of inference,
// compiled in CUDA builds; elsewhere graphs are unavailable and memory reads 0.
#include "infer/cuda_graph.h"

#include <ATen/ATen.h>

#include <string>

#include "xdistill/infer/engine.h"
#include "xdistill/util/log.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace xd::infer {

#ifdef XDISTILL_WITH_CUDA
struct GraphedStep::Impl {
  at::cuda::CUDAGraph graph;
};

std::unique_ptr<GraphedStep> GraphedStep::capture(const std::function<void()>& step, const c10::Device& device) {
  if (!cuda_graphs_available(device)) return nullptr;
  c10::cuda::CUDAGuard device_guard(device);
  auto impl = std::make_unique<Impl>();
  // Capture needs a side stream; warm-up there first (cuBLAS handles, workspaces).
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device.index());
  cudaDeviceSynchronize();
  {
    c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int i = 0; i < 2; ++i) step();
    side.synchronize();
    try {
      impl->graph.capture_begin();
      step();
      impl->graph.capture_end();
    } catch (const std::exception& e) {
      // Fallback: end the (invalidated) capture, clear the error, decode eagerly.
      try {
        impl->graph.capture_end();
      } catch (const std::exception&) {
      }
      cudaGetLastError();
      const std::string what = e.what();
      log::warn("decode: CUDA graph capture failed, decoding eagerly: ", what.substr(0, what.find('\n')));
      return nullptr;
    }
  }
  cudaDeviceSynchronize();
  return std::unique_ptr<GraphedStep>(new GraphedStep(std::move(impl)));
}

void GraphedStep::replay() { impl_->graph.replay(); }

bool cuda_graphs_available(const at::Device& device) { return device.is_cuda(); }

void reset_peak_memory(const at::Device& device) {
  if (!device.is_cuda()) return;
  c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
}

int64_t peak_memory_bytes(const at::Device& device) {
  if (!device.is_cuda()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
}

int64_t allocated_memory_bytes(const at::Device& device) {
  if (!device.is_cuda()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
}

void release_cached_memory(const at::Device& device) {
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
}
#else
struct GraphedStep::Impl {};
std::unique_ptr<GraphedStep> GraphedStep::capture(const std::function<void()>&, const c10::Device&) {
  return nullptr;
}
void GraphedStep::replay() {}
bool cuda_graphs_available(const at::Device&) { return false; }
void reset_peak_memory(const at::Device&) {}
int64_t peak_memory_bytes(const at::Device&) { return 0; }
int64_t allocated_memory_bytes(const at::Device&) { return 0; }
void release_cached_memory(const at::Device&) {}
#endif

GraphedStep::GraphedStep(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GraphedStep::~GraphedStep() = default;

}  // namespace xd::infer

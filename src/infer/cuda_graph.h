// Internal: one captured CUDA graph of a function with fixed input/output buffers.
#pragma once
#include <functional>
#include <memory>

#include <c10/core/Device.h>

namespace xd::infer {

class GraphedStep {
 public:
  // Runs `step` a few times to warm up (it must be safe to run on the current
  // buffers), then captures one call. nullptr where graphs are unavailable.
  static std::unique_ptr<GraphedStep> capture(const std::function<void()>& step, const c10::Device& device);
  ~GraphedStep();
  void replay();

 private:
  struct Impl;
  explicit GraphedStep(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace xd::infer

// c10d process groups: a TCPStore for the rendezvous, then Gloo (CPU tensors) or
// NCCL (CUDA tensors). Gloo's headers come from Debian's libgloo-dev (the torch
// wheel ships ProcessGroupGloo.hpp but not gloo/*.h); its code is inside
// libtorch_cpu, so only declarations are needed.
#ifdef XD_HAVE_GLOO_HEADERS
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#ifdef XDISTILL_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <cstdlib>

#include "backends.h"
#include "xdistill/dist/process_group.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::dist {

struct Work::Impl {
  c10::intrusive_ptr<c10d::Work> work;
  std::vector<at::Tensor> keep_alive;  // the buffers must outlive the collective
};

void Work::wait() {
  if (!impl_) return;
  impl_->work->wait();
  impl_.reset();
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

namespace {

#ifndef XDISTILL_WITH_CUDA
[[maybe_unused]] const bool kNoCuda = true;
#endif

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout) {
#ifdef XD_HAVE_GLOO_HEADERS
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // GLOO_SOCKET_IFNAME picks the network interface (as in PyTorch); otherwise the
  // address this host's name resolves to, or loopback.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("xd/gloo/", store);
  return c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, options);
#else
  (void)store, (void)rank, (void)size, (void)timeout;
  throw Error("this xdistill was built without Gloo's headers, so CPU data parallelism is unavailable: "
              "install libgloo-dev (Debian) and re-run cmake");
#endif
}

Work wrap(c10::intrusive_ptr<c10d::Work> work, std::vector<at::Tensor> keep) {
  auto impl = std::make_shared<Work::Impl>();
  impl->work = std::move(work);
  impl->keep_alive = std::move(keep);
  return Work(std::move(impl));
}

bool is_cuda(const std::string& device) { return device.rfind("cuda", 0) == 0; }

}  // namespace

#ifndef XDISTILL_WITH_CUDA
namespace detail {
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                    std::chrono::milliseconds) {
  throw Error("NCCL data parallelism needs a CUDA build of xdistill (cmake -DXDISTILL_CUDA=ON)");
}
}  // namespace detail
#endif

ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::single(const std::string& device) {
  std::shared_ptr<ProcessGroup> pg(new ProcessGroup());
  pg->device_ = device;
  return pg;
}

std::shared_ptr<ProcessGroup> ProcessGroup::create(const LaunchEnv& env, const std::string& device,
                                                   std::chrono::milliseconds timeout) {
  if (!env.distributed()) return single(device);
  std::shared_ptr<ProcessGroup> pg(new ProcessGroup());
  pg->rank_ = env.rank;
  pg->size_ = env.world_size;
  pg->device_ = device;
  pg->impl_ = std::make_unique<Impl>();
  log::info("dist: ", env.describe(), is_cuda(device) ? ", NCCL on " : ", Gloo on ", device);

  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0;
  store_options.numWorkers = static_cast<size_t>(env.world_size);
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  try {
    pg->impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw Error("dist: rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) + " failed for " +
                env.describe() + " (is every rank started, and the port free?): " + e.what());
  }
  if (is_cuda(device)) {
    pg->backend_ = "nccl";
    pg->impl_->backend = detail::make_nccl_backend(pg->impl_->store, env.rank, env.world_size, timeout);
  } else {
    pg->backend_ = "gloo";
    pg->impl_->backend = make_gloo_backend(pg->impl_->store, env.rank, env.world_size, timeout);
  }
  return pg;
}

void ProcessGroup::all_reduce_sum(at::Tensor& t) { all_reduce_sum_async(t).wait(); }

Work ProcessGroup::all_reduce_sum_async(at::Tensor& t) {
  if (size_ == 1) return Work();
  std::vector<at::Tensor> tensors{t};
  return wrap(impl_->backend->allreduce(tensors, c10d::AllreduceOptions{}), {t});
}

Work ProcessGroup::reduce_scatter_sum_async(at::Tensor& output, at::Tensor& input) {
  XD_CHECK(input.numel() == output.numel() * size_, "reduce_scatter: input has ", input.numel(),
           " elements, expected ", size_, " x ", output.numel());
  if (size_ == 1) {
    output.copy_(input);
    return Work();
  }
  return wrap(impl_->backend->_reduce_scatter_base(output, input, c10d::ReduceScatterOptions{}), {output, input});
}

Work ProcessGroup::all_gather_async(at::Tensor& output, at::Tensor& input) {
  XD_CHECK(output.numel() == input.numel() * size_, "all_gather: output has ", output.numel(),
           " elements, expected ", size_, " x ", input.numel());
  if (size_ == 1) {
    output.copy_(input);
    return Work();
  }
  return wrap(impl_->backend->_allgather_base(output, input, c10d::AllgatherOptions{}), {output, input});
}

void ProcessGroup::broadcast(at::Tensor& t, int root) {
  if (size_ == 1) return;
  std::vector<at::Tensor> tensors{t};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  impl_->backend->broadcast(tensors, options)->wait();
}

std::vector<double> ProcessGroup::all_reduce_sum(std::vector<double> values) {
  if (size_ == 1 || values.empty()) return values;
  auto t = torch::tensor(values, torch::dtype(torch::kFloat64)).to(at::Device(device_));
  all_reduce_sum(t);
  t = t.cpu();
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
  return values;
}

double ProcessGroup::all_reduce_max(double value) {
  if (size_ == 1) return value;
  auto t = torch::full({1}, value, torch::dtype(torch::kFloat64)).to(at::Device(device_));
  std::vector<at::Tensor> tensors{t};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  impl_->backend->allreduce(tensors, options)->wait();
  return t.item<double>();  // on CUDA, item() waits for the stream
}

void ProcessGroup::barrier() {
  // A tiny all-reduce whose result the host reads: works the same on NCCL and Gloo.
  if (size_ > 1) all_reduce_max(0.0);
}

std::string ProcessGroup::broadcast_string(const std::string& value, int root) {
  if (size_ == 1) return value;
  const std::string key = "xd/string/" + std::to_string(string_round_++);
  if (rank_ == root) {
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    return value;
  }
  const auto bytes = impl_->store->get(key);  // blocks until the root has set it
  return std::string(bytes.begin(), bytes.end());
}

std::string use_local_gpu(const LaunchEnv& env, const std::string& device) {
  if (!is_cuda(device)) return device;
#ifdef XDISTILL_WITH_CUDA
  const int count = static_cast<int>(c10::cuda::device_count());
  if (env.local_rank >= count)
    throw Error("dist: local rank " + std::to_string(env.local_rank) + " needs GPU " + std::to_string(env.local_rank) +
                " but only " + std::to_string(count) + " are visible (one process per GPU: check --ntasks-per-node / "
                "--gpus-per-node, or CUDA_VISIBLE_DEVICES)");
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank));
  return "cuda:" + std::to_string(env.local_rank);
#else
  (void)env;
  throw Error("device '" + device + "' requested, but this xdistill was built without CUDA");
#endif
}

DataParallel init_data_parallel(const std::string& device, std::chrono::milliseconds timeout) {
  DataParallel dp;
  dp.env = detect_launch_env();
  if (!dp.env.distributed()) {
    dp.device = device;
    dp.group = ProcessGroup::single(device);
    return dp;
  }
  dp.device = use_local_gpu(dp.env, device);
  dp.group = ProcessGroup::create(dp.env, dp.device, timeout);
  return dp;
}

}  // namespace xd::dist

// Safetensors <-> at::Tensor (the only torch translation unit of the io module).
#include "xdistill/io/torch_io.h"

#include <ATen/ATen.h>

#include "xdistill/util/error.h"

namespace xd::io {

at::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::BOOL: return at::kBool;
    case DType::U8: return at::kByte;
    case DType::I8: return at::kChar;
    case DType::I16: return at::kShort;
    case DType::I32: return at::kInt;
    case DType::I64: return at::kLong;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::F32: return at::kFloat;
    case DType::F64: return at::kDouble;
  }
  throw Error("internal: unknown DType");
}

DType from_scalar_type(at::ScalarType type) {
  switch (type) {
    case at::kBool: return DType::BOOL;
    case at::kByte: return DType::U8;
    case at::kChar: return DType::I8;
    case at::kShort: return DType::I16;
    case at::kInt: return DType::I32;
    case at::kLong: return DType::I64;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kFloat: return DType::F32;
    case at::kDouble: return DType::F64;
    default: throw Error(std::string("tensor dtype ") + c10::toString(type) + " cannot be stored in safetensors here");
  }
}

at::Tensor load_tensor(const Checkpoint& ck, const std::string& name, std::optional<at::ScalarType> dtype,
                       const at::Device& device) {
  const TensorInfo& info = ck.info(name);
  const at::ScalarType stored = to_scalar_type(info.dtype);
  const uint8_t* bytes = ck.data(name);
  const auto options = at::TensorOptions().dtype(stored).device(at::kCPU);
  at::Tensor host;
  if (reinterpret_cast<uintptr_t>(bytes) % dtype_size(info.dtype) == 0 && info.nbytes() > 0) {
    auto* keep = new Checkpoint(ck);  // keeps the mapping alive as long as the tensor
    host = at::from_blob(const_cast<uint8_t*>(bytes), info.shape, [keep](void*) { delete keep; }, options);
  } else {  // misaligned (a foreign writer) or empty: copy
    host = at::empty(info.shape, options);
    if (info.nbytes() > 0) std::memcpy(host.data_ptr(), bytes, info.nbytes());
  }
  const at::ScalarType want = dtype.value_or(stored);
  if (device.is_cpu()) return want == stored ? host : host.to(want);
  return host.to(device, /*non_blocking=*/false).to(want);
}

void save_tensors(const std::string& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  std::map<std::string, std::string> metadata, uint64_t max_shard_bytes) {
  metadata.emplace("format", "pt");
  CheckpointWriter writer(dir, max_shard_bytes, std::move(metadata));
  std::vector<CheckpointWriter::PlannedTensor> plan;
  for (const auto& [name, tensor] : tensors)
    plan.push_back({name, from_scalar_type(tensor.scalar_type()), tensor.sizes().vec()});
  writer.plan(plan);  // each tensor is written once, straight into its shard
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const DType dtype = from_scalar_type(t.scalar_type());
    writer.add(name, dtype, t.sizes().vec(), t.data_ptr(), t.numel() * dtype_size(dtype));
  }
  writer.finish();
}

}  // namespace xd::io

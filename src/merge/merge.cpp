// The merge driver: checks, then one streamed pass over the tensors.
//
// Memory: each tensor is processed in chunks of spec.chunk_elements. Per chunk,
// each input's bytes are read through the mapping, converted to f32 in small
// per-thread blocks, combined, and rounded into the output tensor's buffer; then
// the chunk's input pages are dropped (MADV_DONTNEED), so the resident set holds
// one output tensor plus a chunk per input, however many experts there are.
#include "xdistill/merge/merge.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "merge_output.h"
#include "xdistill/io/safetensors.h"
#include "xdistill/merge/compat.h"
#include "xdistill/merge/content_hash.h"
#include "xdistill/merge/convert.h"
#include "xdistill/merge/parallel.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"
#include "xdistill/util/progress.h"

namespace xd::merge {
namespace stdfs = std::filesystem;

std::vector<double> resolve_weights(const MergeSpec& spec) {
  const size_t k = spec.experts.size();
  size_t given = 0;
  for (const auto& e : spec.experts) given += e.weight.has_value();
  if (given != 0 && given != k)
    throw UsageError("merge: give a weight for every expert or for none (" + std::to_string(given) + " of " +
                     std::to_string(k) + " given)");
  std::vector<double> w(k, 1.0 / static_cast<double>(k));
  if (given == 0) return w;
  double sum = 0;
  for (size_t i = 0; i < k; ++i) {
    w[i] = *spec.experts[i].weight;
    if (!std::isfinite(w[i]) || w[i] < 0)
      throw UsageError("merge: weight " + std::to_string(w[i]) + " of expert " + std::to_string(i + 1) + " (" +
                       spec.experts[i].dir + ") is negative or not finite; weights must be >= 0");
    sum += w[i];
  }
  if (sum <= 0) throw UsageError("merge: the weights sum to 0");
  if (spec.normalize && std::fabs(sum - 1.0) > 1e-6) {
    log::warn("merge: the weights sum to ", sum, ", not 1; normalising them");
    for (double& x : w) x /= sum;
  }
  return w;
}

std::vector<double> resolve_densities(const MergeSpec& spec) {
  if (!uses_density(spec.method)) return {};
  std::vector<double> d;
  for (size_t i = 0; i < spec.experts.size(); ++i) {
    const auto v = spec.experts[i].density ? spec.experts[i].density : spec.density;
    if (!v)
      throw UsageError(std::string("merge: method ") + method_name(spec.method) +
                       " needs a density (--density, or parameters.density in the recipe)");
    if (!(*v > 0.0 && *v <= 1.0))
      throw UsageError("merge: density " + std::to_string(*v) + " of expert " + std::to_string(i + 1) +
                       " is outside (0, 1]");
    d.push_back(*v);
  }
  return d;
}

namespace {

io::DType output_dtype(const std::string& choice, io::DType stored) {
  if (choice == "auto") return stored;
  if (choice == "bf16" || choice == "bfloat16") return io::DType::BF16;
  if (choice == "f16" || choice == "float16") return io::DType::F16;
  if (choice == "f32" || choice == "float32") return io::DType::F32;
  throw UsageError("merge: unknown output dtype '" + choice + "' (known: auto, bf16, f16, f32)");
}

void check_spec(const MergeSpec& spec) {
  if (spec.experts.empty()) throw UsageError("merge: no experts given (--experts DIR...)");
  if (spec.out.empty()) throw UsageError("merge: no output directory given (--out DIR)");
  if (needs_base(spec.method) && spec.base.empty())
    throw UsageError(std::string("merge: method ") + method_name(spec.method) + " needs --base (the seed θ(0))");
  if (spec.chunk_elements <= 0 || spec.chunk_elements % (1 << 19) != 0)
    throw UsageError("merge: chunk size must be a positive multiple of 2^19 elements");
  output_dtype(spec.dtype, io::DType::F32);
  std::error_code ec;
  const auto out = stdfs::weakly_canonical(spec.out, ec);
  auto same = [&](const std::string& dir) { return !dir.empty() && stdfs::weakly_canonical(dir, ec) == out; };
  for (const auto& e : spec.experts)
    if (same(e.dir)) throw UsageError("merge: the output directory " + spec.out + " is one of the experts");
  if (same(spec.base)) throw UsageError("merge: the output directory " + spec.out + " is the base");
  if (stdfs::exists(spec.out) && !spec.overwrite)
    throw UsageError("merge: output directory " + spec.out + " exists; pass --overwrite to replace it");
}

// Everything one tensor's merge needs; inputs = experts, then the base if any.
struct TensorJob {
  std::string name;
  std::vector<const io::Checkpoint*> inputs;
  std::vector<CheckpointHasher>* hashers;
  const MethodParams* params;
  bool has_base;
  io::DType out_dtype;
  int64_t chunk;
};

void hash_and_release_chunk(const TensorJob& job, uint64_t byte_begin, uint64_t byte_end, bool release) {
  for (size_t i = 0; i < job.inputs.size(); ++i) {
    const io::TensorInfo& info = job.inputs[i]->info(job.name);
    const uint8_t* data = job.inputs[i]->data(job.name);
    const int64_t blocks = static_cast<int64_t>((byte_end - byte_begin + kHashBlockBytes - 1) / kHashBlockBytes);
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
      const uint64_t s = byte_begin + static_cast<uint64_t>(b0) * kHashBlockBytes;
      const uint64_t e = std::min(byte_end, byte_begin + static_cast<uint64_t>(b1) * kHashBlockBytes);
      (*job.hashers)[i].hash_range(info, data, s, e);
    });
    if (release) job.inputs[i]->release(job.name, byte_begin, byte_end);
  }
}

std::vector<float> ties_thresholds(const TensorJob& job, int64_t n, const std::vector<double>& densities) {
  std::vector<float> thresholds;
  const io::Checkpoint& base = *job.inputs.back();
  const io::DType dtype = base.info(job.name).dtype;
  const size_t es = io::dtype_size(dtype);
  for (size_t i = 0; i + 1 < job.inputs.size(); ++i) {
    const io::Checkpoint& expert = *job.inputs[i];
    const int64_t k = std::llround(densities[i] * static_cast<double>(n));
    thresholds.push_back(kth_largest_magnitude(n, k, [&](int64_t b, int64_t e, float* out) {
      std::vector<float> theta0(static_cast<size_t>(e - b));
      to_f32(expert.data(job.name) + b * es, dtype, e - b, out);
      to_f32(base.data(job.name) + b * es, dtype, e - b, theta0.data());
      for (int64_t j = 0; j < e - b; ++j) out[j] -= theta0[j];
      expert.release(job.name, b * es, e * es);
      base.release(job.name, b * es, e * es);
    }));
  }
  return thresholds;
}

// Merges float tensor job.name into `out` (stored as job.out_dtype).
void merge_float_tensor(const TensorJob& job, const std::vector<double>& densities, std::vector<uint8_t>& out) {
  const io::TensorInfo& ref = job.inputs[0]->info(job.name);
  const int64_t n = ref.numel();
  const size_t in_es = io::dtype_size(ref.dtype), out_es = io::dtype_size(job.out_dtype);
  const size_t experts = job.params->weights.size();
  TensorPlan plan;
  if (job.params->method == Method::Ties) plan.ties_threshold = ties_thresholds(job, n, densities);
  if (job.params->method == Method::Dare)
    for (size_t i = 0; i < experts; ++i) plan.dare_stream.push_back(dare_stream_key(job.params->seed, job.name, i));
  out.resize(static_cast<size_t>(n) * out_es);
  constexpr int64_t kBlock = 2048;
  for (int64_t c0 = 0; c0 < n; c0 += job.chunk) {
    const int64_t c1 = std::min(n, c0 + job.chunk);
    for (const auto* in : job.inputs) in->prefetch(job.name, c1 * in_es, std::min(n, c1 + job.chunk) * in_es);
    parallel_for(c1 - c0, 1 << 15, [&](int64_t t0, int64_t t1) {
      std::vector<float> scratch(static_cast<size_t>(kBlock) * (job.inputs.size() + 1));
      std::vector<const float*> rows(experts);
      float* result = scratch.data() + kBlock * job.inputs.size();
      for (int64_t b = c0 + t0; b < c0 + t1; b += kBlock) {
        const int64_t len = std::min<int64_t>(kBlock, c0 + t1 - b);
        for (size_t i = 0; i < job.inputs.size(); ++i)
          to_f32(job.inputs[i]->data(job.name) + b * in_es, ref.dtype, len, scratch.data() + kBlock * i);
        for (size_t i = 0; i < experts; ++i) rows[i] = scratch.data() + kBlock * i;
        const float* base = job.has_base ? scratch.data() + kBlock * experts : nullptr;
        combine_block(*job.params, plan, rows.data(), base, b, len, result);
        from_f32(result, len, job.out_dtype, out.data() + b * out_es);
      }
    });
    hash_and_release_chunk(job, c0 * in_es, c1 * in_es, /*release=*/true);
  }
}

// Tensors in the order they lie in the reference's files, so reads are sequential.
std::vector<std::string> layout_order(const io::Checkpoint& ck) {
  std::vector<std::string> names = ck.names();
  std::sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    const auto& ia = ck.info(a);
    const auto& ib = ck.info(b);
    return std::tie(ia.file, ia.offset_begin) < std::tie(ib.file, ib.offset_begin);
  });
  return names;
}

}  // namespace

MergeResult run_merge(const MergeSpec& spec) {
  const auto start = std::chrono::steady_clock::now();
  check_spec(spec);
  MergeResult result;
  result.weights = resolve_weights(spec);
  const std::vector<double> densities = resolve_densities(spec);
  set_threads(spec.threads);

  std::vector<MergeInput> inputs;
  for (size_t i = 0; i < spec.experts.size(); ++i)
    inputs.push_back({"expert " + std::to_string(i + 1) + " (" + spec.experts[i].dir + ")", spec.experts[i].dir,
                      io::Checkpoint::open(spec.experts[i].dir)});
  if (needs_base(spec.method)) inputs.push_back({"base (" + spec.base + ")", spec.base, io::Checkpoint::open(spec.base)});
  else if (!spec.base.empty()) log::warn("merge: --base is not used by method linear; ignoring it");
  check_compatible(inputs);

  MethodParams params;
  params.method = spec.method;
  params.seed = spec.seed;
  params.weights = result.weights;
  for (double d : densities) params.densities.push_back(static_cast<float>(d));

  const io::Checkpoint& ref = inputs[0].checkpoint;
  std::vector<CheckpointHasher> hashers(inputs.size());
  stdfs::path out_dir = stdfs::absolute(spec.out).lexically_normal();
  if (!out_dir.has_filename()) out_dir = out_dir.parent_path();  // "out/" names "out"
  const stdfs::path staging = fs::temp_sibling(out_dir);
  log::info("merge: ", method_name(spec.method), " of ", spec.experts.size(), " experts, ", ref.names().size(),
            " tensors, ", ref.total_bytes() >> 20, " MiB each, on ", threads(), " threads");
  try {
    io::CheckpointWriter writer(staging.string(), spec.max_shard_bytes, output_metadata(ref));
    const std::vector<std::string> order = layout_order(ref);
    std::vector<io::CheckpointWriter::PlannedTensor> plan;
    for (const auto& name : order) {
      const io::TensorInfo& info = ref.info(name);
      plan.push_back({name, is_mergeable_float(info.dtype) ? output_dtype(spec.dtype, info.dtype) : info.dtype, info.shape});
    }
    writer.plan(plan);  // tensors go straight to their final place in the shards
    Progress progress("merge", static_cast<int64_t>(ref.total_bytes() >> 20), "MiB", 5.0);
    uint64_t done = 0;
    std::vector<uint8_t> out;
    std::vector<const io::Checkpoint*> cks;
    for (const auto& in : inputs) cks.push_back(&in.checkpoint);
    for (const auto& name : order) {
      const io::TensorInfo& info = ref.info(name);
      for (size_t i = 0; i < inputs.size(); ++i) hashers[i].begin_tensor(inputs[i].checkpoint.info(name));
      TensorJob job{name, cks, &hashers, &params, needs_base(spec.method), output_dtype(spec.dtype, info.dtype),
                    spec.chunk_elements};
      if (is_mergeable_float(info.dtype)) {
        merge_float_tensor(job, densities, out);
        writer.add(name, job.out_dtype, info.shape, out.data(), out.size());
        result.bytes_written += out.size();
        std::vector<uint8_t>().swap(out);  // give the tensor's memory back now
      } else {  // checked identical in every input: copied as is
        writer.add(name, info.dtype, info.shape, ref.data(name), info.nbytes());
        hash_and_release_chunk(job, 0, info.nbytes(), /*release=*/true);
        result.bytes_written += info.nbytes();
      }
      result.bytes_read += info.nbytes() * inputs.size();
      ++result.tensors;
      done += info.nbytes();
      progress.set(static_cast<int64_t>(done >> 20));
    }
    writer.finish();
    progress.finish();
    std::vector<std::string> digests;
    for (const auto& h : hashers) digests.push_back(h.digest());
    write_merge_extras(staging.string(), spec, inputs, result, densities, digests, writer.shard_files());
    fs::replace_directory(staging, out_dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_tree_noexcept(staging);
    throw;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::info("merge: wrote ", spec.out, " (", result.tensors, " tensors, ", result.bytes_written >> 20, " MiB) in ",
            result.seconds, " s");
  return result;
}

}  // namespace xd::merge

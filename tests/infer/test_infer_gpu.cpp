// Inference on the GPU (skipped without CUDA): incremental decoding in bf16 against
// the float32 full forward, mixed-length batches against single rows, student
// memory independent of the context, CUDA-graph decode against eager decode.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "ops/row_kernels.h"
#include "ops/window_heads.h"
#include "xdistill/infer/engine.h"
#include "xdistill/infer/window_prefill.h"
#include "xdistill/models/decoder.h"
#include "xdistill/ops/window_attention.h"
#include "xdistill/student/student_model.h"

using namespace xd;

namespace {

struct Pair {
  std::shared_ptr<models::Decoder> teacher;
  std::shared_ptr<student::StudentModel> student;
};

// A small Llama (head_dim 32, so that flash attention and the mLSTM kernels run) and
// its student moved away from the initialisation, on `device` in `dtype`.
// `family` overrides config keys (e.g. a Qwen3 with per-head q/k norms); `features`
// picks the student's feature map.
Pair make_pair(const at::Device& device, at::ScalarType dtype, int64_t hidden = 128, int64_t layers = 2,
               const nlohmann::json& family = nlohmann::json::object(), const std::string& features = "hedgehog") {
  nlohmann::json c = {{"model_type", "llama"},     {"hidden_size", hidden},     {"intermediate_size", 2 * hidden},
                      {"num_hidden_layers", layers}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                      {"vocab_size", 97},          {"max_position_embeddings", 16384}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},     {"tie_word_embeddings", false}};
  c.update(family);
  auto config = models::parse_model_config(c, "test");
  auto teacher = std::make_shared<models::Decoder>(config, models::plan_from_config(config),
                                                   at::TensorOptions().device(device).dtype(dtype));
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  for (auto& item : teacher->named_parameters(true)) {
    auto r = item.key().find("norm") != std::string::npos ? torch::rand(item.value().sizes()) * 0.4 + 0.8
                                                          : torch::randn(item.value().sizes()) * 0.15;
    item.value().copy_(r);
  }
  teacher->eval();
  student::StudentConfig s;
  s.window = 16;
  s.sinks = 4;
  s.feature_map = features;
  auto student = student::student_from_teacher(*teacher, s);
  for (auto& [name, p] : student->new_parameters()) p.add_(torch::randn(p.sizes()).to(p.options()) * 0.2);
  return {teacher, student};
}

at::Tensor ids_of(int64_t n, int64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 97, {n}, at::TensorOptions().dtype(at::kLong));
}

std::vector<int64_t> vec(const at::Tensor& t) {
  const auto c = t.to(at::kCPU).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const auto x = a.to(at::kCPU, at::kFloat), y = b.to(at::kCPU, at::kFloat);
  return ((x - y).norm() / y.norm()).item<double>();
}

// Logits of positions prompt-1 .. n-1 through the engine (chunked prefill + steps).
at::Tensor incremental(std::shared_ptr<models::Decoder> model, const std::vector<int64_t>& ids, int64_t prompt,
                       int64_t chunk, bool graph = true) {
  infer::InferenceEngine engine(model, 1, ids.size() + 1, {chunk, graph});
  std::vector<at::Tensor> out{engine.prefill({std::vector<int64_t>(ids.begin(), ids.begin() + prompt)}).clone()};
  for (size_t t = prompt; t < ids.size(); ++t) out.push_back(engine.step(torch::tensor({ids[t]}, at::kLong)).clone());
  return torch::cat(out, 0);
}

#define REQUIRE_CUDA()                                                         \
  do {                                                                          \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";       \
  } while (0)

}  // namespace

TEST(InferenceGpu, Bf16IncrementalMatchesTheFloat32FullForward) {
  REQUIRE_CUDA();
  const auto ref = make_pair(at::kCPU, at::kFloat);
  const auto gpu = make_pair(at::kCUDA, at::kBFloat16);
  const auto ids = vec(ids_of(300, 1));
  torch::NoGradGuard no_grad;
  for (int which = 0; which < 2; ++which) {
    auto cpu_model = which ? std::static_pointer_cast<models::Decoder>(ref.student) : ref.teacher;
    auto gpu_model = which ? std::static_pointer_cast<models::Decoder>(gpu.student) : gpu.teacher;
    const auto full = cpu_model->forward(torch::tensor(ids).view({1, -1})).squeeze(0).narrow(0, 239, 61);
    for (int64_t chunk : {0, 64, 100}) {
      const auto inc = incremental(gpu_model, ids, 240, chunk);
      // bf16 rounding alone: H200, 2 layers, measured 0.034 for the teacher at every chunk size.
      EXPECT_LT(relative_error(inc, full), 0.05) << (which ? "student" : "teacher") << " chunk " << chunk;
      const double agree = (inc.to(at::kCPU).argmax(-1) == full.argmax(-1)).to(at::kFloat).mean().item<double>();
      EXPECT_GE(agree, 0.75) << (which ? "student" : "teacher") << " chunk " << chunk;
    }
  }
}

TEST(InferenceGpu, MixedLengthBatchEqualsSingleRows) {
  REQUIRE_CUDA();
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto pair = make_pair(at::kCUDA, dtype);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t n : {70, 23, 70, 150, 1}) prompts.push_back(vec(ids_of(n, n)));
    for (auto model : {std::static_pointer_cast<models::Decoder>(pair.student), pair.teacher}) {
      infer::GreedyOptions o;
      o.max_new_tokens = 12;
      o.batch_size = 5;
      o.engine.prefill_chunk = 32;
      const auto batched = infer::generate_greedy(model, prompts, o);
      o.batch_size = 1;
      const auto alone = infer::generate_greedy(model, prompts, o);
      if (dtype == at::kFloat) {
        EXPECT_EQ(batched, alone);
      }
      infer::InferenceEngine engine(model, 5, 200, {32, true});
      const auto first = engine.prefill(prompts).argmax(-1);
      const auto logits = engine.step(first).clone();
      for (int64_t r = 0; r < 5; ++r) {
        infer::InferenceEngine one(model, 1, 200, {32, true});
        one.prefill({prompts[r]});
        const auto l = one.step(first.narrow(0, r, 1));
        EXPECT_LT(relative_error(l, logits.narrow(0, r, 1)), dtype == at::kFloat ? 1e-5 : 2e-2) << "row " << r;
      }
    }
  }
}

TEST(InferenceGpu, StudentMemoryDoesNotGrowWithContext) {
  REQUIRE_CUDA();
  const auto pair = make_pair(at::kCUDA, at::kBFloat16, 256, 4);
  auto peak_for = [&](std::shared_ptr<models::Decoder> model, int64_t context) {
    infer::release_cached_memory(model->device());
    const int64_t before = infer::allocated_memory_bytes(model->device());
    infer::reset_peak_memory(model->device());
    {
      infer::InferenceEngine engine(model, 2, context + 16, {1024, true});
      const auto p = vec(ids_of(context, 5));
      auto next = engine.prefill({p, p}).argmax(-1);
      for (int i = 0; i < 16; ++i) next = engine.step(next).argmax(-1);
      torch::cuda::synchronize();
    }
    return infer::peak_memory_bytes(model->device()) - before;
  };
  // A first run allocates what stays for the process (library workspaces, handles):
  // keep it out of both measurements.
  peak_for(pair.student, 512);
  const int64_t s2k = peak_for(pair.student, 2048), s8k = peak_for(pair.student, 8192);
  EXPECT_LT(std::abs(s8k - s2k), s2k / 50 + (1 << 20)) << "student peak " << s2k << " vs " << s8k << " bytes";
  // The teacher's K/V cache does grow: the measurement can tell.
  const int64_t t2k = peak_for(pair.teacher, 2048), t8k = peak_for(pair.teacher, 8192);
  EXPECT_GT(t8k, t2k + (1 << 20)) << "teacher peak " << t2k << " vs " << t8k << " bytes";
}

TEST(InferenceGpu, CudaGraphDecodeEqualsEagerDecode) {
  REQUIRE_CUDA();
  const auto pair = make_pair(at::kCUDA, at::kBFloat16);
  const auto ids = vec(ids_of(120, 9));
  for (auto model : {std::static_pointer_cast<models::Decoder>(pair.student), pair.teacher}) {
    infer::InferenceEngine graphed(model, 1, 8, {0, true});
    EXPECT_TRUE(graphed.uses_cuda_graph());
    const auto with_graph = incremental(model, ids, 100, 32, true);
    const auto eager = incremental(model, ids, 100, 32, false);
    EXPECT_LT(relative_error(with_graph, eager), 1e-3);
    EXPECT_TRUE(torch::equal(with_graph.argmax(-1), eager.argmax(-1)));
  }
}

// The fused decode-step kernels (student mixer, RMSNorm with the residual add, SiLU * up)
// against the ATen step they replace, over prompts that leave the window, fill the
// sinks and wrap the ring, for both models, float32 and bf16, with and without graphs.
TEST(InferenceGpu, FusedDecodeStepEqualsTheAtenStep) {
  REQUIRE_CUDA();
  // Llama with Hedgehog features; Qwen3 (per-head q/k norms, head_dim 64) with the
  // [softmax(z), softmax(-z)] features.
  const nlohmann::json qwen3 = {{"model_type", "qwen3"}, {"head_dim", 64}};
  for (int variant = 0; variant < 3; ++variant) {
    const auto dtype = variant == 0 ? at::kFloat : at::kBFloat16;
    const auto pair = variant < 2 ? make_pair(at::kCUDA, dtype) : make_pair(at::kCUDA, dtype, 128, 2, qwen3, "hedgehog_pm");
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t n : {3, 15, 40, 100}) prompts.push_back(vec(ids_of(n, 20 + n)));
    for (auto model : {std::static_pointer_cast<models::Decoder>(pair.student), pair.teacher}) {
      const bool student = model == std::static_pointer_cast<models::Decoder>(pair.student);
      for (bool graph : {false, true}) {
        infer::InferenceEngine fused(model, 4, 160, {32, graph, true});
        infer::InferenceEngine aten(model, 4, 160, {32, graph, false});
        EXPECT_TRUE(fused.uses_fused_step());
        EXPECT_FALSE(aten.uses_fused_step());
        auto next = fused.prefill(prompts).argmax(-1);
        aten.prefill(prompts);
        double worst = 0;
        for (int i = 0; i < 40; ++i) {  // rows reach 43..140: short rows cross the window of 16
          const auto a = fused.step(next).clone(), b = aten.step(next).clone();
          worst = std::max(worst, relative_error(a, b));
          next = b.argmax(-1);  // both follow the ATen tokens
        }
        // float32: summation order alone; bf16: a few roundings that land on the
        // other side (the kernels round every tensor ATen materialises).
        EXPECT_LT(worst, dtype == at::kFloat ? 1e-5 : 2e-2)
            << (student ? "student" : "teacher") << " variant " << variant << (graph ? " graph" : " eager");
      }
    }
  }
}

// The two-role decode kernel (the default; the mLSTM half and the window half of
// each row and head in separate blocks) runs the one-block kernel's phase
// code, so its steps give the same bits, eager and replayed from a CUDA graph, over
// rows that leave the window, fill the sinks and wrap the ring: float32, bf16 and
// fp16, head dims 32, 64 and 128, both feature maps.
TEST(InferenceGpu, TwoRoleDecodeStepEqualsOneBlockStep) {
  REQUIRE_CUDA();
  const nlohmann::json qwen3 = {{"model_type", "qwen3"}, {"head_dim", 64}};
  for (int variant = 0; variant < 5; ++variant) {
    const auto dtype = variant == 0 ? at::kFloat : variant == 4 ? at::kHalf : at::kBFloat16;
    const auto pair = variant == 2   ? make_pair(at::kCUDA, dtype, 128, 2, qwen3, "hedgehog_pm")
                      : variant == 3 ? make_pair(at::kCUDA, dtype, 512)  // head dim 128
                                     : make_pair(at::kCUDA, dtype);
    const auto model = std::static_pointer_cast<models::Decoder>(pair.student);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t n : {3, 15, 40, 100}) prompts.push_back(vec(ids_of(n, 30 + n)));
    for (bool graph : {false, true}) {
      setenv("XD_DECODE_STEP", "one_block", 1);  // read when the engine makes its state
      infer::InferenceEngine one_block(model, 4, 160, {32, graph, true});
      setenv("XD_DECODE_STEP", "two_role", 1);
      infer::InferenceEngine two_role(model, 4, 160, {32, graph, true});
      unsetenv("XD_DECODE_STEP");
      ASSERT_TRUE(one_block.uses_fused_step() && two_role.uses_fused_step());
      auto next = one_block.prefill(prompts).argmax(-1);
      two_role.prefill(prompts);
      for (int i = 0; i < 40; ++i) {
        const auto a = one_block.step(next).clone(), b = two_role.step(next).clone();
        ASSERT_TRUE(torch::equal(a, b)) << "variant " << variant << (graph ? " graph" : " eager") << ", step " << i
                                        << ": relative difference " << relative_error(b, a);
        next = a.argmax(-1);
      }
    }
  }
}

// A prompt continued chunk by chunk from the window cache (flash attention over ring +
// chunk, the cached sinks merged with ATen operations, or by the sink kernel with
// XD_CACHED_SINKS=kernel) against the dense float32 reference over the whole
// sequence, grouped query heads.
TEST(InferenceGpu, WindowContinueMatchesTheDenseReference) {
  REQUIRE_CUDA();
  torch::manual_seed(21);
  const int64_t B = 2, S = 700;
  struct Heads { int64_t H, Hk, window, sinks; };
  // Grouped heads; one key/value head per query head; more sinks than the window holds.
  for (const Heads& c : {Heads{8, 2, 64, 4}, Heads{4, 4, 64, 4}, Heads{4, 2, 6, 8}}) {
    for (int64_t D : {int64_t{64}, int64_t{128}}) {
      // [B,S,H,D] projections viewed as [B,H,S,D], as the student hands them over.
      const auto o = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
      const auto q = torch::randn({B, S, c.H, D}, o).transpose(1, 2),
                 k = torch::randn({B, S, c.Hk, D}, o).transpose(1, 2), v = torch::randn({B, S, c.Hk, D}, o).transpose(1, 2);
      const auto f32 = [](const at::Tensor& t) { return t.to(at::kFloat); };
      const auto want = ops::reference::window_attention_dense(f32(q), f32(ops::repeat_kv(k, c.H)),
                                                               f32(ops::repeat_kv(v, c.H)), c.window, c.sinks);
      for (int64_t chunk : {int64_t{3}, int64_t{100}, int64_t{333}}) {
        std::vector<at::Tensor> by_merge;
        for (const char* merge : {"aten", "kernel"}) {
          setenv("XD_CACHED_SINKS", merge, 1);
          ops::WindowCache cache(B, c.Hk, D, c.window, c.sinks, o);
          std::vector<at::Tensor> parts;
          for (int64_t s = 0; s < S; s += chunk) {
            const int64_t n = std::min(chunk, S - s);
            parts.push_back(
                infer::window_attention_continue(q.narrow(2, s, n), k.narrow(2, s, n), v.narrow(2, s, n), cache));
          }
          by_merge.push_back(torch::cat(parts, 2));
          EXPECT_LT(relative_error(by_merge.back(), want), 1e-2)
              << "H " << c.H << "/" << c.Hk << ", window " << c.window << ", sinks " << c.sinks << ", D " << D
              << ", chunk " << chunk << ", sinks merged by " << merge;
        }
        unsetenv("XD_CACHED_SINKS");
        // The two merges differ by the rounding of one bf16 output at most.
        const auto gap = (f32(by_merge[1]) - f32(by_merge[0])).abs(), scale = f32(by_merge[0]).abs() + 1e-3;
        EXPECT_LE((gap / scale).max().item<double>(), 1.6e-2)
            << "kernel against ATen merge, H " << c.H << "/" << c.Hk << ", sinks " << c.sinks << ", D " << D
            << ", chunk " << chunk;
      }
    }
  }
}

// Inference forwards (no autograd) take the row kernels; the references are the ATen
// operations (RMSNorm's written out: with autograd on, the module takes its training
// kernels). RoPE and SiLU * up round as the ATen ops do (bit-identical); RMSNorm sums its
// squares in another order (close).
TEST(InferenceGpu, RowKernelsEqualTheirAtenOperations) {
  REQUIRE_CUDA();
  setenv("XD_ROPE_KERNEL", "1", 1);  // the default; set in case the environment turns it off
  torch::manual_seed(31);
  for (auto dtype : {at::kBFloat16, at::kFloat}) {
    const auto o = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    // D = 64: 16-byte halves (the vector kernel); D = 12: the element-wise kernel.
    for (int64_t D : {64, 12})
    for (bool in_fp32 : {false, true}) {
      const auto x = torch::randn({2, 37, 4, D}, o).transpose(1, 2);  // [B,H,T,D] view of [B,T,H,D]
      const auto angles = torch::rand({37, D}, at::TensorOptions().device(at::kCUDA)) * 6.0;
      const auto cos = angles.cos(), sin = angles.sin();
      at::Tensor want, got;
      {
        at::AutoGradMode with_autograd(true);
        want = models::apply_rotary(x, cos, sin, in_fp32);
      }
      {
        torch::NoGradGuard no_grad;
        got = models::apply_rotary(x, cos, sin, in_fp32);
      }
      EXPECT_TRUE(torch::equal(got, want)) << "RoPE " << dtype << " D " << D << " in_fp32 " << in_fp32;
      EXPECT_EQ(got.strides(), want.strides());
    }
    const auto hidden = torch::randn({3, 5, 256}, o);
    models::RMSNorm norm(256, 1e-5, false, o);
    models::GatedMlp mlp(256, 512, false, o);
    {
      torch::NoGradGuard no_grad;
      norm->weight.copy_(torch::rand({256}, o) + 0.5);
      for (auto& p : mlp->parameters()) p.copy_(torch::randn(p.sizes(), o) * 0.05);
    }
    at::Tensor want_norm, want_mlp, got_norm, got_mlp;
    {
      at::AutoGradMode with_autograd(true);
      // RMSNorm's ATen ops written out (with autograd on, the module takes the training kernels).
      const auto h = hidden.to(at::kFloat);
      want_norm = (norm->weight * (h * (h.pow(2).mean(-1, true) + 1e-5).rsqrt()).to(dtype)).detach();
      want_mlp = mlp->down_proj->forward(at::silu(mlp->gate_proj->forward(hidden)) * mlp->up_proj->forward(hidden))
                     .detach();
    }
    {
      torch::NoGradGuard no_grad;
      got_norm = norm->forward(hidden);
      got_mlp = mlp->forward(hidden);
    }
    EXPECT_LT(relative_error(got_norm, want_norm), dtype == at::kFloat ? 1e-6 : 4e-3) << dtype;
    EXPECT_TRUE(torch::equal(got_mlp, want_mlp)) << "SiLU * up " << dtype;
    // Rows of 5 (not 16 bytes): the element-wise SiLU * up kernel.
    const auto gate = torch::randn({7, 5}, o), up = torch::randn({7, 5}, o);
    at::Tensor want_silu;
    {
      at::AutoGradMode with_autograd(true);
      want_silu = (torch::silu(gate) * up).detach();
    }
    EXPECT_TRUE(torch::equal(ops::fused_silu_mul(gate, up), want_silu)) << "SiLU * up, 35 elements " << dtype;
  }
  unsetenv("XD_ROPE_KERNEL");
}

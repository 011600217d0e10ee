// Data-parallel benchmark on GPUs: a decoder with the parameter shapes of a
// Llama-style model (3B or 8B), trained with ShardedAdamW, bf16 compute, fp32
// master weights and fp32 gradient reduction. Reports tokens/s and peak memory per
// GPU as one JSON line from rank 0. Not a test: run by tools/bench_dist.sh.
//
//   xd_bench_dist --shape 3b|8b|tiny [--nproc N] [--steps S] [--warmup W] [--seq T]
//                 [--micro-batch B] [--accum A] [--teacher] [--bucket-mb M]
// --nproc N starts N copies of itself through the local launcher (one per GPU);
// --teacher adds a frozen bf16 teacher of the same shape and the Stage II loss
// (0.9 CE + 0.1 top-256 KL), as an online-teacher Stage II step.
//
// The layers are a shape-faithful stand-in for the hybrid student: the same
// projection matrices (q, k, v, o, gate, up, down), RMSNorm and embeddings, so the
// optimizer, the reduction and the parameter memory are those of the real model;
// the sequence mixing is a cheap causal cumulative mean instead of mLSTM + window
// attention (that cost is the kernels' benchmark, not this one).
#include <torch/torch.h>

#ifdef XDISTILL_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <chrono>
#include <cstdio>
#include <iostream>

#include "xdistill/dist/launch_env.h"
#include "xdistill/dist/launcher.h"
#include "xdistill/dist/process_group.h"
#include "xdistill/dist/sharded_adamw.h"

namespace {
using namespace xd::dist;

struct Shape {
  int64_t vocab, hidden, layers, heads, kv_heads, ffn;
};
Shape shape_named(const std::string& name) {
  if (name == "8b") return {128256, 4096, 32, 32, 8, 14336};  // Llama-3.1-8B
  if (name == "3b") return {128256, 3072, 28, 24, 8, 8192};   // Llama-3.2-3B
  if (name == "tiny") return {512, 64, 2, 4, 2, 128};
  throw std::runtime_error("--shape must be 3b, 8b or tiny");
}

struct LayerImpl : torch::nn::Module {
  LayerImpl(const Shape& s) {
    const int64_t head_dim = s.hidden / s.heads;
    q = register_module("q", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.hidden).bias(false)));
    k = register_module("k", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.kv_heads * head_dim).bias(false)));
    v = register_module("v", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.kv_heads * head_dim).bias(false)));
    o = register_module("o", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.hidden).bias(false)));
    gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.ffn).bias(false)));
    up = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.ffn).bias(false)));
    down = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(s.ffn, s.hidden).bias(false)));
    norm1 = register_parameter("norm1", torch::ones({s.hidden}));
    norm2 = register_parameter("norm2", torch::ones({s.hidden}));
    groups = s.heads / s.kv_heads;
  }
  static at::Tensor rms(const at::Tensor& x, const at::Tensor& w) {
    auto xf = x.to(at::kFloat);
    return (xf * torch::rsqrt(xf.pow(2).mean(-1, true) + 1e-5)).to(x.scalar_type()) * w;
  }
  at::Tensor forward(at::Tensor x) {
    auto h = rms(x, norm1);
    auto qv = q(h), kv = k(h).repeat({1, 1, groups}), vv = v(h).repeat({1, 1, groups});
    // Causal mixing stand-in: running mean of k*v, gated by sigmoid(q).
    auto t = torch::arange(1, x.size(1) + 1, x.options()).view({1, -1, 1});
    auto mixed = torch::sigmoid(qv) * ((kv * vv).cumsum(1) / t);
    x = x + o(mixed);
    h = rms(x, norm2);
    return x + down(torch::silu(gate(h)) * up(h));
  }
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr}, gate{nullptr}, up{nullptr}, down{nullptr};
  at::Tensor norm1, norm2;
  int64_t groups = 1;
};
TORCH_MODULE(Layer);

struct DecoderImpl : torch::nn::Module {
  explicit DecoderImpl(const Shape& s) {
    embed = register_module("embed", torch::nn::Embedding(s.vocab, s.hidden));
    for (int64_t i = 0; i < s.layers; ++i) layers.push_back(register_module("layer" + std::to_string(i), Layer(s)));
    norm = register_parameter("norm", torch::ones({s.hidden}));
    head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(s.hidden, s.vocab).bias(false)));
  }
  at::Tensor forward(const at::Tensor& ids) {
    auto x = embed(ids);
    for (auto& l : layers) x = l(x);
    return head(LayerImpl::rms(x, norm)).to(at::kFloat);
  }
  torch::nn::Embedding embed{nullptr};
  std::vector<Layer> layers;
  at::Tensor norm;
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Decoder);

// 0.9 CE + 0.1 KL(teacher || student) over the teacher's top-256 tokens, both
// renormalised over that set (Stage II of the method).
at::Tensor stage2_loss(const at::Tensor& logits, const at::Tensor& teacher_logits, const at::Tensor& targets) {
  auto ce = torch::nn::functional::cross_entropy(logits.flatten(0, 1), targets.flatten());
  auto [t_top, idx] = teacher_logits.topk(256, -1);
  auto t_logp = torch::log_softmax(t_top, -1);
  auto s_logp = torch::log_softmax(logits.gather(-1, idx), -1);
  auto kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean();
  return 0.9 * ce + 0.1 * kl;
}

double peak_gib() {
#ifdef XDISTILL_WITH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
  return static_cast<double>(stats.reserved_bytes[0].peak) / (1ull << 30);
#else
  return 0.0;
#endif
}

struct Options {
  std::string shape = "tiny";
  int nproc = 0, steps = 6, warmup = 2, accum = 4;
  int64_t seq = 4096, micro_batch = 1, bucket_mb = 100;
  bool teacher = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--shape") o.shape = next();
    else if (a == "--nproc") o.nproc = std::stoi(next());
    else if (a == "--steps") o.steps = std::stoi(next());
    else if (a == "--warmup") o.warmup = std::stoi(next());
    else if (a == "--accum") o.accum = std::stoi(next());
    else if (a == "--seq") o.seq = std::stoll(next());
    else if (a == "--micro-batch") o.micro_batch = std::stoll(next());
    else if (a == "--bucket-mb") o.bucket_mb = std::stoll(next());
    else if (a == "--teacher") o.teacher = true;
    else throw std::runtime_error("unknown option " + a);
  }
  return o;
}

int run_rank(const Options& o) {
  const LaunchEnv env = detect_launch_env();
  const std::string device = use_local_gpu(env, torch::cuda::is_available() ? "cuda" : "cpu");
  auto pg = ProcessGroup::create(env, device);
  const Shape s = shape_named(o.shape);
  const auto dtype = device == "cpu" ? at::kFloat : at::kBFloat16;
  torch::manual_seed(1);
  Decoder student(s);
  student->to(at::Device(device), dtype);
  Decoder teacher{nullptr};
  if (o.teacher) {
    teacher = Decoder(s);
    teacher->to(at::Device(device), dtype);
    for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  }
  std::vector<TrainedParam> params;
  for (auto& p : student->named_parameters()) params.push_back({p.key(), p.value(), p.value().dim() > 1});
  ShardingOptions sharding;
  sharding.bucket_numel = o.bucket_mb * (1 << 20) / 4;
  ShardedAdamW opt(params, pg, AdamWOptions{}, sharding);

  double seconds = 0;
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    pg->barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int a = 0; a < o.accum; ++a) {
      auto ids = torch::randint(s.vocab, {o.micro_batch, o.seq + 1}, torch::dtype(torch::kLong).device(device));
      auto input = ids.narrow(1, 0, o.seq), target = ids.narrow(1, 1, o.seq);
      auto logits = student(input);
      at::Tensor loss;
      if (o.teacher) {
        at::Tensor t_logits;
        {
          torch::NoGradGuard no_grad;
          t_logits = teacher(input);
        }
        loss = stage2_loss(logits, t_logits, target);
      } else {
        loss = torch::nn::functional::cross_entropy(logits.flatten(0, 1), target.flatten());
      }
      (loss / o.accum).backward();
      opt.finish_backward();
    }
    opt.step(1e-5, 1.0);
    if (device != "cpu") torch::cuda::synchronize();
    pg->barrier();
    if (step >= o.warmup) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const double tokens = double(o.steps) * o.accum * o.micro_batch * o.seq * pg->size();
  const double peak = pg->all_reduce_max(peak_gib());
  if (pg->is_main()) {
    std::printf("{\"shape\": \"%s\", \"gpus\": %d, \"teacher\": %s, \"params\": %lld, \"seq\": %lld, "
                "\"micro_batch\": %lld, \"accum\": %d, \"steps\": %d, \"step_seconds\": %.4f, "
                "\"tokens_per_second\": %.1f, \"tokens_per_second_per_gpu\": %.1f, \"peak_reserved_gib_max\": %.2f, "
                "\"optimizer_state_gib_per_gpu\": %.2f}\n",
                o.shape.c_str(), pg->size(), o.teacher ? "true" : "false",
                static_cast<long long>(opt.layout().total_numel()), static_cast<long long>(o.seq),
                static_cast<long long>(o.micro_batch), o.accum, o.steps, seconds / o.steps, tokens / seconds,
                tokens / seconds / pg->size(), peak, opt.state_bytes() / double(1ull << 30));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.nproc > 0) {
      LocalLaunch launch;
      launch.nproc = o.nproc;
      launch.executable = "/proc/self/exe";
      for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--nproc") ++i;
        else launch.args.push_back(argv[i]);
      return launch_local(launch);
    }
    return run_rank(o);
  } catch (const std::exception& e) {
    std::cerr << "bench_dist: " << e.what() << "\n";
    return 1;
  }
}

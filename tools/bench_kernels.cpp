// Times xdistill's sequence-mixer operators on the GPU (CUDA events, median of
// repetitions, inputs rotated among several sets so L2 does not hold them):
// mLSTM forward and forward+backward, sliding window + sinks forward and
// forward+backward, plus the machine's copy bandwidth and bf16 GEMM rate.
// Prints one JSON object per line; tools/bench_kernels.py makes the table.
//   xd_bench_kernels B H S D [reps] [profile]   (profile: one mLSTM and one window forward+backward, for ncu)
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "xdistill/ops/mlstm.h"
#include "xdistill/ops/window_attention.h"

namespace {

double median_ms(const std::function<void(int)>& fn, int reps) {
  for (int w = 0; w < 3; ++w) fn(w);
  std::vector<double> ms;
  auto stream = at::cuda::getCurrentCUDAStream();
  for (int r = 0; r < reps; ++r) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    cudaEventRecord(a, stream);
    fn(r);
    cudaEventRecord(b, stream);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void emit(const char* name, int64_t B, int64_t H, int64_t S, int64_t D, double fwd, double fwdbwd) {
  std::printf("{\"op\": \"%s\", \"B\": %ld, \"H\": %ld, \"S\": %ld, \"D\": %ld, \"fwd_ms\": %.4f, \"fwdbwd_ms\": %.4f}\n",
              name, (long)B, (long)H, (long)S, (long)D, fwd, fwdbwd);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: xd_bench_kernels B H S D [reps]\n");
    return 2;
  }
  const int64_t B = std::atol(argv[1]), H = std::atol(argv[2]), S = std::atol(argv[3]), D = std::atol(argv[4]);
  const int reps = argc > 5 ? std::atoi(argv[5]) : 20;
  torch::NoGradGuard no_grad_outside;
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto f32 = bf16.dtype(at::kFloat);
  constexpr int kSets = 2;
  struct Set { at::Tensor q, k, v, i, f, g; };
  std::vector<Set> sets;
  for (int s = 0; s < kSets; ++s)
    sets.push_back({at::randn({B, H, S, D}, bf16), at::randn({B, H, S, D}, bf16), at::randn({B, H, S, D}, bf16),
                    at::randn({B, H, S}, f32) - 1.0, at::randn({B, H, S}, f32) + 3.0, at::randn({B, H, S, D}, bf16)});

  if (argc > 6 && std::string(argv[6]) == "profile") {  // one mLSTM forward+backward, for ncu
    torch::AutoGradMode grad(true);
    const auto& s = sets[0];
    auto q = s.q.detach().requires_grad_(true), k = s.k.detach().requires_grad_(true),
         v = s.v.detach().requires_grad_(true), i = s.i.detach().requires_grad_(true),
         f = s.f.detach().requires_grad_(true);
    auto [h, st] = xd::ops::mlstm(q, k, v, i, f, c10::nullopt, 64);
    h.backward(s.g);
    auto qw = s.q.detach().requires_grad_(true), kw = s.k.detach().requires_grad_(true),
         vw = s.v.detach().requires_grad_(true);
    xd::ops::window_attention(qw, kw, vw, 512, 4).backward(s.g);
    cudaDeviceSynchronize();
    return 0;
  }
  {  // ceilings: device-to-device copy (bytes read + written) and a bf16 GEMM
    auto src = at::randn({int64_t(1) << 30}, bf16), dst = at::empty_like(src);
    const double ms = median_ms([&](int) { dst.copy_(src); }, reps);
    std::printf("{\"op\": \"copy\", \"GBps\": %.1f}\n", 2.0 * src.nbytes() / ms / 1e6);
    auto a = at::randn({8192, 8192}, bf16), b = at::randn({8192, 8192}, bf16);
    const double gms = median_ms([&](int) { at::mm(a, b); }, reps);
    std::printf("{\"op\": \"gemm_bf16\", \"TFLOPs\": %.1f}\n", 2.0 * 8192.0 * 8192.0 * 8192.0 / gms / 1e9);
  }
  // The default (mma.sync kernels), every warpgroup kernel (XD_MLSTM_WGMMA=on, compute
  // capability 9.0) and one-piece variants of each; with XD_BENCH_FMA=1 also the
  // first version (fp32 FMA kernels), the split-bf16-states forward and the fused forward
  // with early copies. Every switch is set on every row ("" = the default).
  struct Variant {
    const char* name;
    const char* wgmma = "";     // XD_MLSTM_WGMMA
    const char* forward = "";   // XD_MLSTM_FORWARD
    const char* scans = "";     // XD_MLSTM_BACKWARD_SCANS
    const char* scan = "";      // XD_MLSTM_SCAN
    const char* backward = "";  // XD_MLSTM_BACKWARD
    const char* kernels = "";   // XD_MLSTM_KERNELS
  };
  const bool with_fma = std::getenv("XD_BENCH_FMA") && std::string(std::getenv("XD_BENCH_FMA")) == "1";
  std::vector<Variant> variants{Variant{"xd_mlstm_mma_sync", "off"},
                                Variant{"xd_mlstm_mma_sync_fused_forward", "off", "fused"},
                                Variant{"xd_mlstm_mma_sync_wgmma_forward", "off", "wgmma"},
                                Variant{"xd_mlstm_mma_sync_wgmma_backward", "off", "", "", "", "wgmma"},
                                Variant{"xd_mlstm_wgmma", "on"},
                                Variant{"xd_mlstm_wgmma_serial_scans", "on", "", "serial"},
                                Variant{"xd_mlstm_wgmma_walk", "on", "", "", "", "wgmma_walk"},
                                Variant{"xd_mlstm_wgmma_two_kernel_forward", "on", "two_kernel"}};
  if (with_fma) variants.push_back(Variant{"xd_mlstm_mma_sync_fused_forward_overlap", "off", "fused_overlap"});
  if (with_fma) variants.push_back(Variant{"xd_mlstm_fp32_fma", "off", "", "", "", "", "fma"});
  if (with_fma) variants.push_back(Variant{"xd_mlstm_mma_sync_split_states", "off", "split_states"});
  for (const Variant& var : variants) {
    setenv("XD_MLSTM_WGMMA", var.wgmma, 1);
    setenv("XD_MLSTM_KERNELS", var.kernels, 1);
    setenv("XD_MLSTM_FORWARD", var.forward, 1);
    setenv("XD_MLSTM_BACKWARD_SCANS", var.scans, 1);
    setenv("XD_MLSTM_SCAN", var.scan, 1);
    setenv("XD_MLSTM_BACKWARD", var.backward, 1);
    constexpr int64_t L = 64;
    const double fwd = median_ms([&](int r) {
      const auto& s = sets[r % kSets];
      xd::ops::mlstm(s.q, s.k, s.v, s.i, s.f, c10::nullopt, L);
    }, reps);
    const double fb = median_ms([&](int r) {
      torch::AutoGradMode grad(true);
      const auto& s = sets[r % kSets];
      auto q = s.q.detach().requires_grad_(true), k = s.k.detach().requires_grad_(true),
           v = s.v.detach().requires_grad_(true), i = s.i.detach().requires_grad_(true),
           f = s.f.detach().requires_grad_(true);
      auto [h, st] = xd::ops::mlstm(q, k, v, i, f, c10::nullopt, L);
      h.backward(s.g);
    }, reps);
    emit(var.name, B, H, S, D, fwd, fb);
  }
  // The window on cuDNN's fused attention (the training default) and on flash attention
  // (the default without gradients). The anchors' inputs are contiguous [B,H,S,D]; the
  // student's are [B,H,S,D] views of its [B,S,H,D] projections, and so is its upstream
  // gradient (W_o's backward): the "student_layout" row times that.
  auto student_layout = [](const at::Tensor& x) { return x.transpose(1, 2).contiguous().transpose(1, 2); };
  std::vector<Set> student_sets;
  for (const Set& s : sets)
    student_sets.push_back({student_layout(s.q), student_layout(s.k), student_layout(s.v), s.i, s.f, student_layout(s.g)});
  struct WindowVariant { const char* name; const char* attention; bool student; };
  for (const WindowVariant& wv : {WindowVariant{"xd_window512_sinks4_flash", "flash", false},
                                  WindowVariant{"xd_window512_sinks4_cudnn", "cudnn", false},
                                  WindowVariant{"xd_window512_sinks4_cudnn_student_layout", "cudnn", true}}) {
    setenv("XD_WINDOW_ATTENTION", wv.attention, 1);
    const std::vector<Set>& in = wv.student ? student_sets : sets;
    const double fwd = median_ms([&](int r) {
      const auto& s = in[r % kSets];
      xd::ops::window_attention(s.q, s.k, s.v, 512, 4);
    }, reps);
    const double fb = median_ms([&](int r) {
      torch::AutoGradMode grad(true);
      const auto& s = in[r % kSets];
      auto q = s.q.detach().requires_grad_(true), k = s.k.detach().requires_grad_(true),
           v = s.v.detach().requires_grad_(true);
      xd::ops::window_attention(q, k, v, 512, 4).backward(s.g);
    }, reps);
    emit(wv.name, B, H, S, D, fwd, fb);
  }
  return 0;
}

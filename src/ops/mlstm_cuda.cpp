// The CUDA path of xd::ops::mlstm: an autograd function around the chunkwise
// kernels in kernels/ (design: kernels/README.md). The per-position gate tables
// (stabilisers and weights, a few floats per position) are built here with ATen
// in float64; everything of size B*H*S*D runs in the kernels.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstdlib>

#include "mlstm_params.h"
#include "ops/mlstm_cuda.h"
#include "xdistill/util/error.h"

namespace xd::ops::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace xk = xd::kernels;

void check_mlstm_launch(const char* kernel) {
  if (const char* e = xk::last_error_or_null()) throw Error(std::string("mlstm: CUDA kernel ") + kernel + " failed: " + e);
}

xk::DType kernel_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return xk::DType::F32;
    case at::kBFloat16: return xk::DType::BF16;
    case at::kHalf: return xk::DType::F16;
    default: throw Error("mlstm: no CUDA kernel for dtype " + std::string(c10::toString(t.scalar_type())));
  }
}

const float* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// An environment switch's value ("" when unset): the kernels' selection switches below.
std::string env_choice(const char* name) {
  const char* env = std::getenv(name);
  return env ? env : "";
}

// Which kernels run. bf16 inputs with head dims that are multiples of 8 take the
// tensor-core kernels (mlstm_mma_*.cu) by default; XD_MLSTM_KERNELS=fma selects the
// fp32 FMA kernels (the first version, kept for comparison), =split the opt-in
// split-bf16 variant of those. float32 and float16 inputs always take fp32 FMA.
enum class Path { Fma, Split, Mma };

Path path_for(const at::Tensor& q, const at::Tensor& v) {
  const std::string choice = env_choice("XD_MLSTM_KERNELS");
  if (q.scalar_type() == at::kFloat || choice == "fma") return Path::Fma;
  if (choice == "split") return Path::Split;
  if (q.scalar_type() == at::kBFloat16 && xk::mlstm_mma_supported(static_cast<int>(q.size(3)), static_cast<int>(v.size(3))))
    return Path::Mma;
  return Path::Fma;
}

// XD_MLSTM_FORWARD=split_states: the scan writes the chunk states as split-bf16
// planes and an 8-warp forward copies them asynchronously. Its forward kernel is
// faster (0.99 against 1.22 ms at B=8 S=4096) but the scan's 4-byte plane stores
// cost more than that (measured, BENCHMARKS.md), so the default reads float32 states.
bool split_forward_states() { return env_choice("XD_MLSTM_FORWARD") == "split_states"; }

// XD_MLSTM_FORWARD=fused: the scan and the outputs in one kernel
// (kernels/mlstm_mma_fused_forward.cu), the chunk states kept on chip;
// =fused_overlap the same with the next chunk's copies issued early. Both pass the
// float64 oracle (MlstmCuda.FusedForward*, H100 2026-12-07). Opt-in because each block
// walks its head's chunks in series: faster with many heads (1.85 against 2.27 ms at
// B=8 H=32 S=4096), slower with few (2.85 against 2.43 at B=2 S=16384; BENCHMARKS.md).
bool fused_forward(bool* overlap) {
  const std::string choice = env_choice("XD_MLSTM_FORWARD");
  *overlap = choice == "fused_overlap";
  return choice == "fused" || *overlap;
}

// The warpgroup kernels (kernels/sm90a/, wgmma): bf16 on compute capability 9.0 with
// head dims that are multiples of 8 up to 128 (mlstm_wgmma_supported). Opt-in until
// they have run on a GPU (written in sessions 25 and 26, when none was lent):
// XD_MLSTM_WGMMA=on selects all of them, =off (or unset) the mma.sync kernels. Each
// piece also has its own switch, which wins when set: XD_MLSTM_FORWARD (wgmma,
// two_kernel, fused, fused_overlap, split_states), XD_MLSTM_SCAN (wgmma, mma),
// XD_MLSTM_BACKWARD (wgmma, wgmma_walk, mma), XD_MLSTM_BACKWARD_SCANS (overlap, serial).
bool wgmma_by_default(int64_t Dk, int64_t Dv) {
  return env_choice("XD_MLSTM_WGMMA") == "on" &&
         xk::mlstm_wgmma_supported(static_cast<int>(Dk), static_cast<int>(Dv));
}

// One piece's choice: its switch when set, else the default.
bool wgmma_piece(const char* name, int64_t Dk, int64_t Dv) {
  const std::string choice = env_choice(name);
  if (!choice.empty())
    return choice == "wgmma" && xk::mlstm_wgmma_supported(static_cast<int>(Dk), static_cast<int>(Dv));
  return wgmma_by_default(Dk, Dv);
}

// The one-kernel forward (kernels/sm90a/mlstm_wgmma_forward.cu).
bool wgmma_forward(int64_t Dk, int64_t Dv) { return wgmma_piece("XD_MLSTM_FORWARD", Dk, Dv); }
// The chunk scans, the backward's two (kernels/sm90a/mlstm_wgmma_scan.cu).
bool wgmma_scan(int64_t Dk, int64_t Dv) { return wgmma_piece("XD_MLSTM_SCAN", Dk, Dv); }
// The per-chunk gradients (kernels/sm90a/mlstm_wgmma_backward.cu).
bool wgmma_backward(int64_t Dk, int64_t Dv) { return wgmma_piece("XD_MLSTM_BACKWARD", Dk, Dv); }

// XD_MLSTM_BACKWARD=wgmma_walk: the same gradients by blocks that each walk G chunks,
// carrying C and n from the recompute's checkpoints every G chunks (G from
// XD_MLSTM_WALK_CHUNKS, a power of two, default 8). Returns G, or 0 for the per-chunk
// kernels.
int wgmma_walk_chunks(int64_t Dk, int64_t Dv) {
  if (env_choice("XD_MLSTM_BACKWARD") != "wgmma_walk" ||
      !xk::mlstm_wgmma_supported(static_cast<int>(Dk), static_cast<int>(Dv)))
    return 0;
  const std::string text = env_choice("XD_MLSTM_WALK_CHUNKS");
  if (text.empty()) return 8;
  char* end = nullptr;
  const long g = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || g < 1 || g > 1024 || (g & (g - 1)) != 0)
    throw Error("XD_MLSTM_WALK_CHUNKS: expected a power of two from 1 to 1024, got '" + text + "'");
  return static_cast<int>(g);
}

// The backward's recompute of the forward states on a side stream beside the reverse
// scan (both walk their heads' chunks in series and neither fills the GPU's memory
// bandwidth alone): the default with the warpgroup scans (by_default).
bool overlapped_scans(bool by_default) {
  const std::string choice = env_choice("XD_MLSTM_BACKWARD_SCANS");
  return choice.empty() ? by_default : choice == "overlap";
}

// XD_MLSTM_GATE=sequential selects the one-thread-per-head gate kernel.
bool sequential_gates() { return env_choice("XD_MLSTM_GATE") == "sequential"; }

// Per-position and per-chunk tables for chunk length L (spec: chunkwise form).
// With b the in-chunk cumulative log forget gate and u_t = max_{j<=t}(i_j - b_j):
//   m_t = b_t + max(m_prev, u_t),   m_end = g + max(m_prev, u_last)   (the recurrent m)
struct GateTables {
  int64_t NC, S_pad;
  at::Tensor m_pos, row_log, col_log, carry, key_w;  // [BH,S_pad] float32
  at::Tensor row_log_lo, col_log_lo;                  // their float32 residues (FMA kernels), or undefined
  at::Tensor decay;                                   // [BH,NC]
  at::Tensor m_final;                                 // [BH]
};

// XD_MLSTM_TABLES=aten selects the ATen construction below instead of the kernel.
bool aten_tables() { return env_choice("XD_MLSTM_TABLES") == "aten"; }

GateTables gate_tables_aten(const at::Tensor& i, const at::Tensor& f, const at::Tensor& m0, int64_t L,
                            bool residues);

// `residues`: also the float32 residues of row_log and col_log, which the FMA
// kernels add back in their weights (kernels/mlstm_params.h, GateTablesParams).
GateTables gate_tables(const at::Tensor& i, const at::Tensor& f, const at::Tensor& m0, int64_t L, bool residues) {
  const int64_t BH = i.size(0), S = i.size(1), NC = (S + L - 1) / L, S_pad = NC * L;
  if (aten_tables() || !xk::mlstm_gate_tables_supported(static_cast<int>(L), static_cast<int>(NC)))
    return gate_tables_aten(i, f, m0, L, residues);
  const auto o = i.options().dtype(at::kFloat);
  GateTables t;
  t.NC = NC;
  t.S_pad = S_pad;
  for (auto* x : {&t.m_pos, &t.row_log, &t.col_log, &t.carry, &t.key_w}) *x = at::empty({BH, S_pad}, o);
  t.decay = at::empty({BH, NC}, o);
  t.m_final = at::empty({BH}, o);
  xk::GateTablesParams p{};
  p.i = i.data_ptr<float>();
  p.f = f.data_ptr<float>();
  p.m0 = m0.defined() ? m0.data_ptr<float>() : nullptr;
  p.m_pos = t.m_pos.data_ptr<float>();
  p.row_log = t.row_log.data_ptr<float>();
  p.col_log = t.col_log.data_ptr<float>();
  if (residues) {
    t.row_log_lo = at::empty({BH, S_pad}, o);
    t.col_log_lo = at::empty({BH, S_pad}, o);
    p.row_log_lo = t.row_log_lo.data_ptr<float>();
    p.col_log_lo = t.col_log_lo.data_ptr<float>();
  }
  p.carry = t.carry.data_ptr<float>();
  p.key_w = t.key_w.data_ptr<float>();
  p.decay = t.decay.data_ptr<float>();
  p.m_final = t.m_final.data_ptr<float>();
  p.BH = static_cast<int>(BH);
  p.S = static_cast<int>(S);
  p.S_pad = static_cast<int>(S_pad);
  p.L = static_cast<int>(L);
  p.NC = static_cast<int>(NC);
  xk::mlstm_gate_tables(p, at::cuda::getCurrentCUDAStream());
  check_mlstm_launch("gate_tables");
  return t;
}

GateTables gate_tables_aten(const at::Tensor& i, const at::Tensor& f, const at::Tensor& m0, int64_t L,
                            bool residues) {
  const int64_t BH = i.size(0), S = i.size(1), NC = (S + L - 1) / L, S_pad = NC * L;
  const auto d = i.options().dtype(at::kDouble);
  const double inf = std::numeric_limits<double>::infinity();
  auto lf = at::zeros({BH, S_pad}, d);
  lf.narrow(1, 0, S).copy_(at::log_sigmoid(f.to(at::kDouble)));
  auto ip = at::full({BH, S_pad}, -inf, d);
  ip.narrow(1, 0, S).copy_(i);
  lf = lf.view({BH, NC, L});
  ip = ip.view({BH, NC, L});
  const auto b = lf.cumsum(-1);
  const auto u = std::get<0>(at::cummax(ip - b, -1));
  const auto g = b.select(-1, L - 1), u_last = u.select(-1, L - 1);  // [BH,NC]
  // m_end_k = g_k + max(m_end_{k-1}, u_last_k) unrolls to G_k + max(m0, max_{k'<=k} (u_last_k' - G_{k'-1})).
  const auto G = g.cumsum(-1);
  const auto G_before = G - g;
  const auto start = m0.defined() ? m0.to(at::kDouble).unsqueeze(-1) : at::zeros({BH, 1}, d);
  const auto mu = at::maximum(std::get<0>(at::cummax(u_last - G_before, -1)), start);
  const auto m_end = G + mu;
  const auto m_start = at::cat({start, m_end.narrow(1, 0, NC - 1)}, 1);
  const auto m_pos = b + at::maximum(m_start.unsqueeze(-1), u);
  GateTables t;
  t.NC = NC;
  t.S_pad = S_pad;
  auto f32 = [&](const at::Tensor& x) { return x.reshape({BH, -1}).to(at::kFloat).contiguous(); };
  t.m_pos = f32(m_pos);
  const auto row_log = b - m_pos, col_log = ip - b;
  t.row_log = f32(row_log);
  t.col_log = f32(col_log);
  if (residues) {  // col_log is -inf past S: residue 0 there, not NaN
    t.row_log_lo = f32(row_log - t.row_log.view_as(row_log).to(at::kDouble));
    t.col_log_lo = f32(at::nan_to_num(col_log - t.col_log.view_as(col_log).to(at::kDouble), 0.0, 0.0, 0.0));
  }
  t.carry = f32(at::exp(b + m_start.unsqueeze(-1) - m_pos));
  t.key_w = f32(at::exp(g.unsqueeze(-1) - b + ip - m_end.unsqueeze(-1)));
  t.decay = f32(at::exp(g + m_start - m_end));
  t.m_final = m_end.select(1, NC - 1).to(at::kFloat).contiguous();
  return t;
}

struct Dims {
  int64_t B, H, S, Dk, Dv;
  int BH() const { return static_cast<int>(B * H); }
};

// The chunk geometry that the scan, forward-output and backward kernels' parameters share.
template <typename Params>
void set_geometry(Params& p, const Dims& dm, const GateTables& t, int64_t L) {
  p.BH = dm.BH();
  p.S = static_cast<int>(dm.S);
  p.S_pad = static_cast<int>(t.S_pad);
  p.L = static_cast<int>(L);
  p.NC = static_cast<int>(t.NC);
  p.Dk = static_cast<int>(dm.Dk);
  p.Dv = static_cast<int>(dm.Dv);
}

// The chunk scan over k (forward) or q (reverse): see kernels/mlstm_params.h.
void run_scan(const Dims& dm, const at::Tensor& rows, const at::Tensor& cols, float row_scale, const at::Tensor& row_w,
              const at::Tensor& vec_w, const GateTables& t, int64_t L, const at::Tensor& init_mat,
              const at::Tensor& init_vec, bool reverse, Path path, at::Tensor& states, at::Tensor& vecs,
              at::Tensor& final_mat, at::Tensor& final_vec, bool split_states = false, int state_every = 1) {
  const auto o = rows.options().dtype(at::kFloat);
  const int64_t stored = (t.NC + state_every - 1) / state_every;  // every state, or the checkpoints
  states = at::empty({dm.BH(), stored, dm.Dk, dm.Dv}, o);
  vecs = at::empty({dm.BH(), stored, dm.Dk}, o);
  final_mat = at::empty({dm.BH(), dm.Dk, dm.Dv}, o);
  final_vec = at::empty({dm.BH(), dm.Dk}, o);
  xk::ChunkScanParams p{};
  p.rows = rows.data_ptr();
  p.cols = cols.data_ptr();
  p.dtype = kernel_dtype(rows);
  p.row_scale = row_scale;
  p.row_w = row_w.data_ptr<float>();
  p.vec_w = vec_w.data_ptr<float>();
  p.decay = t.decay.data_ptr<float>();
  p.init_mat = ptr_or_null(init_mat);
  p.init_vec = ptr_or_null(init_vec);
  p.states = states.data_ptr<float>();
  p.state_vecs = vecs.data_ptr<float>();
  p.final_mat = final_mat.data_ptr<float>();
  p.final_vec = final_vec.data_ptr<float>();
  set_geometry(p, dm, t, L);
  p.reverse = reverse;
  p.tensor_cores = path == Path::Split;
  p.split_states = split_states && path == Path::Mma;
  if (path == Path::Mma && !p.split_states && (state_every > 1 || wgmma_scan(dm.Dk, dm.Dv)))
    xk::mlstm_chunk_scan_wgmma(p, at::cuda::getCurrentCUDAStream(), state_every);
  else if (path == Path::Mma) xk::mlstm_chunk_scan_mma(p, at::cuda::getCurrentCUDAStream());
  else xk::mlstm_chunk_scan(p, at::cuda::getCurrentCUDAStream());
  check_mlstm_launch("chunk_scan");
}

struct FusedForwardOut { at::Tensor h, dn, C, n, h_lo; };

// h's bf16 rounding residue, kept for the backward's dh.h where a gradient will be
// taken through the tensor-core forward (kernels/mlstm_params.h, ForwardOutputParams::h_lo).
// Opt-in (XD_MLSTM_H_RESIDUE=on): on an H100 (2026-12-07) it took the draw of seed 1001
// from dq 1.26e-2 to 8.1e-3 but another draw's df from 8.7e-3 to 1.16e-2; the bf16
// gradients at rows where |q~.n| cancels carry other errors of the same size
// (kernels/README.md).
at::Tensor h_residue(const at::Tensor& h, bool for_backward) {
  const bool on = env_choice("XD_MLSTM_H_RESIDUE") == "on";
  return on && for_backward && h.scalar_type() == at::kBFloat16 ? at::empty_like(h) : at::Tensor();
}

FusedForwardOut fused_forward_mma(const Dims& dm, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const GateTables& t, const at::Tensor& C0, const at::Tensor& n0, bool overlap,
                                  bool wgmma, bool for_backward) {
  const auto o = q.options().dtype(at::kFloat);
  FusedForwardOut out{at::empty({dm.B, dm.H, dm.S, dm.Dv}, v.options()), at::empty({dm.BH(), dm.S}, o),
                      at::empty({dm.BH(), dm.Dk, dm.Dv}, o), at::empty({dm.BH(), dm.Dk}, o), at::Tensor()};
  out.h_lo = h_residue(out.h, for_backward);
  xk::FusedForwardParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dm.Dk)));
  p.row_log = t.row_log.data_ptr<float>();
  p.col_log = t.col_log.data_ptr<float>();
  p.carry_w = t.carry.data_ptr<float>();
  p.m_pos = t.m_pos.data_ptr<float>();
  p.key_w = t.key_w.data_ptr<float>();
  p.decay = t.decay.data_ptr<float>();
  p.init_mat = ptr_or_null(C0);
  p.init_vec = ptr_or_null(n0);
  p.h = out.h.data_ptr();
  p.dn = out.dn.data_ptr<float>();
  p.final_mat = out.C.data_ptr<float>();
  p.final_vec = out.n.data_ptr<float>();
  p.eps = static_cast<float>(kMlstmEps);
  set_geometry(p, dm, t, 64);
  p.overlap_loads = overlap;
  p.h_lo = out.h_lo.defined() ? out.h_lo.data_ptr() : nullptr;
  if (wgmma) {
    xk::mlstm_fused_forward_wgmma(p, at::cuda::getCurrentCUDAStream());
    check_mlstm_launch("wgmma_forward");
  } else {
    xk::mlstm_fused_forward_mma(p, at::cuda::getCurrentCUDAStream());
    check_mlstm_launch("fused_forward");
  }
  return out;
}

at::Tensor flat_f32(const at::Tensor& t, int64_t BH) {
  return t.defined() ? t.to(at::kFloat).reshape({BH, -1}).contiguous() : t;
}

class MlstmFunction : public torch::autograd::Function<MlstmFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& i, const at::Tensor& f, const at::Tensor& C0, const at::Tensor& n0,
                               const at::Tensor& m0, int64_t L, bool for_backward) {
    const Dims dm{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3)};
    const int BH = dm.BH();
    const auto gi = i.to(at::kFloat).reshape({BH, dm.S}).contiguous();
    const auto gf = f.to(at::kFloat).reshape({BH, dm.S}).contiguous();
    const auto m0f = flat_f32(m0, BH);
    const Path path = path_for(q, v);
    if (path == Path::Mma) L = 64;  // the tensor-core kernels' chunk (same function, any chunk)
    const auto t = gate_tables(gi, gf, m0f.defined() ? m0f.view({BH}) : m0f, L, path != Path::Mma);
    bool overlap = false;
    const bool wgmma = path == Path::Mma && wgmma_forward(dm.Dk, dm.Dv);
    if (path == Path::Mma && (wgmma || fused_forward(&overlap))) {
      auto out =
          fused_forward_mma(dm, q, k, v, t, flat_f32(C0, BH), flat_f32(n0, BH), overlap, wgmma, for_backward);
      save_for_backward(ctx, {q, k, v, i, f, C0, n0, m0, out.h, out.dn}, out.h_lo);
      return {out.h, out.C.view({dm.B, dm.H, dm.Dk, dm.Dv}), out.n.view({dm.B, dm.H, dm.Dk}),
              t.m_final.view({dm.B, dm.H})};
    }
    at::Tensor states, vecs, C, n;
    const bool split = path == Path::Mma && split_forward_states();
    run_scan(dm, k, v, 1.f, t.key_w, t.key_w, t, L, flat_f32(C0, BH), flat_f32(n0, BH), false, path, states, vecs, C,
             n, split);
    auto h = at::empty({dm.B, dm.H, dm.S, dm.Dv}, v.options());
    auto dn = at::empty({BH, dm.S}, q.options().dtype(at::kFloat));
    const auto h_lo = path == Path::Mma ? h_residue(h, for_backward) : at::Tensor();
    xk::ForwardOutputParams p{};
    p.q = q.data_ptr();
    p.k = k.data_ptr();
    p.v = v.data_ptr();
    p.dtype = kernel_dtype(q);
    p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dm.Dk)));
    p.row_log = t.row_log.data_ptr<float>();
    p.col_log = t.col_log.data_ptr<float>();
    p.row_log_lo = ptr_or_null(t.row_log_lo);
    p.col_log_lo = ptr_or_null(t.col_log_lo);
    p.carry_w = t.carry.data_ptr<float>();
    p.m_pos = t.m_pos.data_ptr<float>();
    p.states = states.data_ptr<float>();
    p.state_vecs = vecs.data_ptr<float>();
    p.h = h.data_ptr();
    p.dn = dn.data_ptr<float>();
    p.eps = static_cast<float>(kMlstmEps);
    set_geometry(p, dm, t, L);
    p.tensor_cores = path == Path::Split;
    p.split_states = split;
    p.h_lo = h_lo.defined() ? h_lo.data_ptr() : nullptr;
    if (path == Path::Mma) xk::mlstm_forward_output_mma(p, at::cuda::getCurrentCUDAStream());
    else xk::mlstm_forward_output(p, at::cuda::getCurrentCUDAStream());
    check_mlstm_launch("forward_output");
    save_for_backward(ctx, {q, k, v, i, f, C0, n0, m0, h, dn}, h_lo);
    return {h, C.view({dm.B, dm.H, dm.Dk, dm.Dv}), n.view({dm.B, dm.H, dm.Dk}), t.m_final.view({dm.B, dm.H})};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads);

 private:
  // h's residue is saved only when it exists (a flag says so, rather than an undefined
  // tensor among the saved ones).
  static void save_for_backward(AutogradContext* ctx, variable_list saved, const at::Tensor& h_lo) {
    ctx->saved_data["has_h_lo"] = h_lo.defined();
    if (h_lo.defined()) saved.push_back(h_lo);
    ctx->save_for_backward(saved);
  }
};

variable_list MlstmFunction::backward(AutogradContext* ctx, variable_list grads) {
  const auto s = ctx->get_saved_variables();
  const auto &q = s[0], &k = s[1], &v = s[2], &i = s[3], &f = s[4], &C0 = s[5], &n0 = s[6], &m0 = s[7], &h = s[8],
             &dn = s[9];
  const at::Tensor h_lo = ctx->saved_data["has_h_lo"].toBool() ? s[10] : at::Tensor();
  const Dims dm{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3)};
  const int BH = dm.BH();
  constexpr int64_t L = 64;  // the backward kernels' chunk, whatever the forward used
  const auto fo = q.options().dtype(at::kFloat);
  const auto dh = grads[0].defined() ? grads[0].to(v.scalar_type()).contiguous() : at::zeros_like(h);
  const auto dC_fin = grads[1].defined() ? flat_f32(grads[1], BH) : at::zeros({BH, dm.Dk * dm.Dv}, fo);
  const auto dn_fin = grads[2].defined() ? flat_f32(grads[2], BH) : at::zeros({BH, dm.Dk}, fo);
  const auto gi = i.to(at::kFloat).reshape({BH, dm.S}).contiguous();
  const auto gf = f.to(at::kFloat).reshape({BH, dm.S}).contiguous();
  const auto m0f = flat_f32(m0, BH);
  const Path path = path_for(q, v);
  const auto t = gate_tables(gi, gf, m0f.defined() ? m0f.view({BH}) : m0f, L, path != Path::Mma);

  // Recompute the chunk states (cheaper in memory than keeping them). The reverse scan
  // below does not need them: with overlapped_scans() the two run side by side.
  // With the walking backward (walk = G chunks a block) only every G-th state is stored.
  at::Tensor states, vecs, C_S, n_S;
  const auto main_stream = at::cuda::getCurrentCUDAStream();
  const int walk = path == Path::Mma ? wgmma_walk_chunks(dm.Dk, dm.Dv) : 0;
  const bool overlap = overlapped_scans(path == Path::Mma && wgmma_scan(dm.Dk, dm.Dv));
  at::cuda::CUDAEvent inputs_ready, states_done;
  {
    c10::optional<c10::cuda::CUDAStreamGuard> on_side;
    if (overlap) {
      const auto side = at::cuda::getStreamFromPool();
      inputs_ready.record(main_stream);
      inputs_ready.block(side);
      on_side.emplace(side);
    }
    run_scan(dm, k, v, 1.f, t.key_w, t.key_w, t, L, flat_f32(C0, BH), flat_f32(n0, BH), false, path, states, vecs,
             C_S, n_S, false, walk);
    if (overlap) states_done.record(at::cuda::getCurrentCUDAStream());
  }

  // Normaliser: h = num/den, den = max(|dn|, exp(-m)) + eps.
  const auto m_pos = t.m_pos.narrow(1, 0, dm.S);
  auto gh = at::empty({BH, dm.S}, fo);
  const auto hc = h.contiguous();
  xk::mlstm_row_dot(dh.data_ptr(), hc.data_ptr(), kernel_dtype(h), gh.data_ptr<float>(), BH * static_cast<int>(dm.S),
                    static_cast<int>(dm.Dv), at::cuda::getCurrentCUDAStream());
  check_mlstm_launch("row_dot");
  if (h_lo.defined()) {  // dh.h with h to ~16 bits: hi + lo
    auto gh_lo = at::empty_like(gh);
    xk::mlstm_row_dot(dh.data_ptr(), h_lo.data_ptr(), kernel_dtype(h), gh_lo.data_ptr<float>(),
                      BH * static_cast<int>(dm.S), static_cast<int>(dm.Dv), at::cuda::getCurrentCUDAStream());
    check_mlstm_launch("row_dot");
    gh.add_(gh_lo);
  }
  auto inv_den = at::empty({BH, t.S_pad}, fo), ddn = at::empty_like(inv_den), row_w = at::empty_like(inv_den),
       vec_w = at::empty_like(inv_den), dm_direct = at::empty({BH, dm.S}, fo);
  {
    const auto dnc = dn.contiguous();
    xk::NormaliserTermsParams np{};
    np.dn = dnc.data_ptr<float>();
    np.gh = gh.data_ptr<float>();
    np.m_pos = t.m_pos.data_ptr<float>();
    np.carry = t.carry.data_ptr<float>();
    np.inv_den = inv_den.data_ptr<float>();
    np.ddn = ddn.data_ptr<float>();
    np.row_w = row_w.data_ptr<float>();
    np.vec_w = vec_w.data_ptr<float>();
    np.dm_direct = dm_direct.data_ptr<float>();
    np.eps = static_cast<float>(kMlstmEps);
    np.BH = BH;
    np.S = static_cast<int>(dm.S);
    np.S_pad = static_cast<int>(t.S_pad);
    xk::mlstm_normaliser_terms(np, at::cuda::getCurrentCUDAStream());
    check_mlstm_launch("normaliser_terms");
  }

  at::Tensor dstates, dvecs, dC0, dn0;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dm.Dk)));
  run_scan(dm, q, dh, scale, row_w, vec_w, t, L, dC_fin, dn_fin, true, path, dstates, dvecs, dC0, dn0);
  if (overlap) {  // the side stream's tensors are read here from now on
    states_done.block(main_stream);
    for (const at::Tensor* x : {&states, &vecs, &C_S, &n_S}) x->record_stream(main_stream);
  }

  auto dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  auto q_dot = at::empty({BH, dm.S}, fo), k_dot = at::empty({BH, dm.S}, fo);
  xk::BackwardChunkParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.dh = dh.data_ptr();
  p.dtype = kernel_dtype(q);
  p.scale = scale;
  p.row_log = t.row_log.data_ptr<float>();
  p.col_log = t.col_log.data_ptr<float>();
  p.row_log_lo = ptr_or_null(t.row_log_lo);
  p.col_log_lo = ptr_or_null(t.col_log_lo);
  p.carry_w = t.carry.data_ptr<float>();
  p.key_w = t.key_w.data_ptr<float>();
  p.inv_den = inv_den.data_ptr<float>();
  p.ddn = ddn.data_ptr<float>();
  p.states = states.data_ptr<float>();
  p.state_vecs = vecs.data_ptr<float>();
  p.dstates = dstates.data_ptr<float>();
  p.dstate_vecs = dvecs.data_ptr<float>();
  p.dq = dq.data_ptr();
  p.dk = dk.data_ptr();
  p.dv = dv.data_ptr();
  p.q_dot_dq = q_dot.data_ptr<float>();
  p.k_dot_dk = k_dot.data_ptr<float>();
  // The FMA kernels also sum the forget gate's gradient pair by pair (float32 accuracy
  // needs it); the bf16 tensor-core kernels leave it to the gate kernel's running sum.
  const auto dlf_cross = path != Path::Mma ? at::empty({BH, dm.S}, fo) : at::Tensor();
  p.dlf_cross = dlf_cross.defined() ? dlf_cross.data_ptr<float>() : nullptr;
  p.decay = t.decay.data_ptr<float>();
  set_geometry(p, dm, t, L);
  p.tensor_cores = path == Path::Split;
  p.segment = walk;
  if (path == Path::Mma && (walk > 0 || wgmma_backward(dm.Dk, dm.Dv)))
    xk::mlstm_backward_chunk_wgmma(p, at::cuda::getCurrentCUDAStream());
  else if (path == Path::Mma) xk::mlstm_backward_chunk_mma(p, at::cuda::getCurrentCUDAStream());
  else xk::mlstm_backward_chunk(p, at::cuda::getCurrentCUDAStream());
  check_mlstm_launch("backward_chunk");

  const auto state_dot = ((C_S.reshape({BH, -1}) * dC_fin).sum(-1) + (n_S * dn_fin).sum(-1)).contiguous();
  const auto dm_fin = grads[3].defined() ? flat_f32(grads[3], BH) : at::Tensor();
  auto di = at::empty({BH, dm.S}, fo), df = at::empty({BH, dm.S}, fo), dm0_chain = at::empty({BH}, fo);
  xk::GateBackwardParams g{};
  g.q_dot_dq = q_dot.data_ptr<float>();
  g.k_dot_dk = k_dot.data_ptr<float>();
  g.dm_direct = dm_direct.data_ptr<float>();
  g.f = gf.data_ptr<float>();
  g.i = gi.data_ptr<float>();
  const auto m_pos_c = m_pos.contiguous();
  g.m_pos = m_pos_c.data_ptr<float>();
  g.m0 = ptr_or_null(m0f);
  g.state_dot = state_dot.data_ptr<float>();
  g.dm_final = ptr_or_null(dm_fin);
  g.di = di.data_ptr<float>();
  g.df = df.data_ptr<float>();
  g.dm0 = dm0_chain.data_ptr<float>();
  g.BH = BH;
  g.S = static_cast<int>(dm.S);
  g.sequential = sequential_gates();
  g.dlf_cross = ptr_or_null(dlf_cross);
  xk::mlstm_gate_backward(g, at::cuda::getCurrentCUDAStream());
  check_mlstm_launch("gate_backward");

  at::Tensor gC0, gn0, gm0;
  if (C0.defined()) {
    gC0 = dC0.view(C0.sizes());
    gn0 = dn0.view(n0.sizes());
    // C0 and n0 enter only as C0 exp(m0), n0 exp(m0): d/dm0 = <C0,dC0> + <n0,dn0>.
    gm0 = (dm0_chain + (flat_f32(C0, BH) * dC0.reshape({BH, -1})).sum(-1) + (flat_f32(n0, BH) * dn0).sum(-1))
              .view(m0.sizes());
  }
  // One gradient per forward argument: none for the chunk length and for_backward.
  return {dq, dk, dv, di.view(i.sizes()), df.view(f.sizes()), gC0, gn0, gm0, at::Tensor(), at::Tensor()};
}

}  // namespace

bool mlstm_cuda_supports(const at::Tensor& q, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
                         int64_t chunk_size) {
  const auto t = q.scalar_type();
  return q.is_cuda() && (t == at::kFloat || t == at::kBFloat16 || t == at::kHalf) &&
         i.scalar_type() == at::kFloat && f.scalar_type() == at::kFloat && q.size(3) <= xk::kMaxHeadDim &&
         v.size(3) <= xk::kMaxHeadDim && (chunk_size == 64 || chunk_size == 128);
}

std::pair<at::Tensor, MlstmState> mlstm_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& i, const at::Tensor& f,
                                             const c10::optional<MlstmState>& initial, int64_t chunk_size) {
  const c10::cuda::CUDAGuard guard(q.device());
  // No initial state is the zero state with m0 = 0 (the same function). Autograd
  // functions take no undefined tensor inputs, so it is passed explicitly.
  const auto st = initial ? *initial : mlstm_zero_state(q.size(0), q.size(1), q.size(3), v.size(3), q.options());
  const at::Tensor &C0 = st.C, &n0 = st.n, &m0 = st.m;
  // The backward kernels work in chunks of 64. When a gradient will be taken, the
  // forward runs at 64 too, so the saved h and q~.n come from the same chunking as
  // the backward's recomputed states (measured: the float32 gradients of a
  // forward at 128 differ from the oracle by up to 1.9e-5, against <= 9e-6 at 64;
  // chunk 128 is also the slower forward). Chunk 128 serves inference.
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (q.requires_grad() || k.requires_grad() || v.requires_grad() || i.requires_grad() ||
                           f.requires_grad() || C0.requires_grad() || n0.requires_grad() || m0.requires_grad());
  const int64_t forward_chunk = needs_grad ? 64 : chunk_size;
  auto out = MlstmFunction::apply(q.contiguous(), k.contiguous(), v.contiguous(), i.contiguous(), f.contiguous(), C0,
                                  n0, m0, forward_chunk, needs_grad);
  return {out[0], MlstmState{out[1], out[2], out[3]}};
}

}  // namespace xd::ops::detail

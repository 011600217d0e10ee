// The phases of the student decode step (student_decode_step.cu), shared by its two
// kernels: one block per (row, head) running every phase in series, or two blocks per
// (row, head), one for the mLSTM half and one for the window half. The phase code is
// the same for both, so they give the same bits. Included by student_decode_step.cu only.
#pragma once
#include "student_decode_step_params.h"
#include "student_decode_step_util.cuh"

namespace xd::kernels::decode_step {
// Internal linkage, as when these lived in the .cu file: ptxas then inlines them and
// allocates registers as for the kernel that was checked on the GPU.
namespace {

// Shared-memory rows (floats). Both kernels carve the same fields; the two-block
// kernel gives each role only the buffers it uses.
struct Smem {
  float *q_plain, *k_plain, *v_row, *q_rot, *k_rot, *red;
  float *phi_q, *phi_k;  // mLSTM half
  float *probs;          // window half
  float *part;           // per-thread partial sums
};

// Partial sums: the readout's (4 floats per thread) or the values' (2 rows of E per thread).
template <typename T> __host__ __device__ int mlstm_part_floats() { return 4 * kThreads; }
template <typename T> __host__ __device__ int window_part_floats() { return 2 * kThreads * Vec<T>::n; }
__host__ __device__ inline int common_floats(int D) { return 5 * D + kWarps * kMaxReduce; }

// One block per (row, head): every buffer, `part` sized for the larger use.
template <typename T>
__host__ __device__ int one_block_floats(int D, int Dk, int window, int sinks) {
  const int part = window_part_floats<T>() > mlstm_part_floats<T>() ? window_part_floats<T>() : mlstm_part_floats<T>();
  return common_floats(D) + 2 * Dk + part + window + sinks;
}

// Written out, not shared with carve_role: a shared helper changed ptxas's register
// allocation of the one-block kernel (80 registers and a spill instead of 91-94).
template <typename T>
__device__ Smem carve_one_block(float* base, const StudentDecodeStepParams& p) {
  Smem s{};
  s.q_plain = base;
  s.k_plain = s.q_plain + p.D;
  s.v_row = s.k_plain + p.D;
  s.q_rot = s.v_row + p.D;
  s.k_rot = s.q_rot + p.D;
  s.phi_q = s.k_rot + p.D;
  s.phi_k = s.phi_q + p.Dk;
  s.red = s.phi_k + p.Dk;
  s.part = s.red + kWarps * kMaxReduce;
  const int part = window_part_floats<T>() > mlstm_part_floats<T>() ? window_part_floats<T>() : mlstm_part_floats<T>();
  s.probs = s.part + part;
  return s;
}

// Two blocks per (row, head): the common rows, then the larger role's own buffers.
template <typename T>
__host__ __device__ int two_block_floats(int D, int Dk, int window, int sinks) {
  const int mlstm = 2 * Dk + mlstm_part_floats<T>(), win = window_part_floats<T>() + window + sinks;
  return common_floats(D) + (mlstm > win ? mlstm : win);
}

template <typename T>
__device__ Smem carve_role(float* base, const StudentDecodeStepParams& p, bool mlstm_role) {
  Smem s{};
  s.q_plain = base;
  s.k_plain = s.q_plain + p.D;
  s.v_row = s.k_plain + p.D;
  s.q_rot = s.v_row + p.D;
  s.k_rot = s.q_rot + p.D;
  s.red = s.k_rot + p.D;
  float* own = s.red + kWarps * kMaxReduce;
  if (mlstm_role) {
    s.phi_q = own;
    s.phi_k = s.phi_q + p.Dk;
    s.part = s.phi_k + p.Dk;
  } else {
    s.part = own;
    s.probs = s.part + window_part_floats<T>();
  }
  return s;
}

// Phase 1: plain q, k, v and their RoPE. The rotated rows are published by the
// caller's next barrier.
template <typename T>
__device__ __forceinline__ void load_and_rotate(const StudentDecodeStepParams& p, const Smem& s, int b, int h, int hk) {
  const int tid = threadIdx.x, D = p.D;
  if (tid < D) {
    s.q_plain[tid] = ld(static_cast<const T*>(p.q) + b * p.q_sb + (long long)h * D + tid);
    s.k_plain[tid] = ld(static_cast<const T*>(p.k) + b * p.k_sb + (long long)hk * D + tid);
    s.v_row[tid] = ld(static_cast<const T*>(p.v) + b * p.v_sb + (long long)hk * D + tid);
  }
  __syncthreads();
  if (tid < D) {
    const int half = D / 2;
    const float rq = tid < half ? -s.q_plain[tid + half] : s.q_plain[tid - half];
    const float rk = tid < half ? -s.k_plain[tid + half] : s.k_plain[tid - half];
    const float c = p.cos[(long long)b * D + tid], sn = p.sin[(long long)b * D + tid];
    s.q_rot[tid] = rope<T>(s.q_plain[tid], rq, c, sn, p.rope_in_fp32);
    s.k_rot[tid] = rope<T>(s.k_plain[tid], rk, c, sn, p.rope_in_fp32);
  }
}

// The gates after phase 1: the input and forget gates from x, the output gate from
// the plain [q, k, v]; the stabilised update factors. Its reduction's barrier
// publishes phase 1's rotated rows.
struct Gates {
  float a, e, m_new, o;
};

template <typename T>
__device__ __forceinline__ Gates mlstm_gates(const StudentDecodeStepParams& p, const Smem& s, int b, int h, int bh) {
  const int tid = threadIdx.x, D = p.D;
  // [input gate, forget gate, output gate] pre-activations.
  float g[3] = {0.f, 0.f, 0.f};
  const T* x = static_cast<const T*>(p.x) + b * p.x_sb;
  const float* wi = p.gate_w + (long long)h * p.hidden;
  const float* wf = p.gate_w + (long long)(p.H + h) * p.hidden;
#pragma unroll 4
  for (int c = tid; c < p.hidden; c += kThreads) {
    const float xc = ld(x + c);
    g[0] = fmaf(xc, wi[c], g[0]);
    g[1] = fmaf(xc, wf[c], g[1]);
  }
  const T* u = static_cast<const T*>(p.ogate_u) + (long long)h * 3 * D;
  for (int j = tid; j < 3 * D; j += kThreads) {
    const float in = j < D ? s.q_plain[j] : j < 2 * D ? s.k_plain[j - D] : s.v_row[j - 2 * D];
    g[2] = fmaf(ld(u + j), in, g[2]);
  }
  block_reduce(g, s.red, Sum());  // also publishes q_rot, k_rot
  float zi = g[0] + p.gate_b[h], zf = g[1] + p.gate_b[p.H + h];
  if (p.gate_softcap > 0.f) {
    // ATen divides by a scalar as a multiply by its float reciprocal.
    const float inv_cap = 1.f / p.gate_softcap;
    zi = __fmul_rn(tanhf(__fmul_rn(zi, inv_cap)), p.gate_softcap);
    zf = __fmul_rn(tanhf(__fmul_rn(zf, inv_cap)), p.gate_softcap);
  }
  const float lf = fminf(zf, 0.f) - log1pf(expf(-fabsf(zf)));  // log sigmoid, as ATen
  const float m_prev = p.m[bh];
  Gates r;
  r.m_new = fmaxf(lf + m_prev, zi);
  r.a = expf(lf + m_prev - r.m_new);
  r.e = expf(zi - r.m_new);
  r.o = 1.f / (1.f + expf(-(rnd<T>(g[2]) + p.ogate_b[h])));
  return r;
}

// Phase 2: phi = softmax(z) (or [softmax(z), softmax(-z)]) for q and k, z = x W[h]
// as a model-dtype matmul (fp32 sums, output rounded). Leaves phi_q, phi_k in smem.
template <typename T>
__device__ __forceinline__ void feature_maps(const StudentDecodeStepParams& p, const Smem& s, int h) {
  const int tid = threadIdx.x, D = p.D, Df = p.Df;
  const T* wq = static_cast<const T*>(p.feature_q) + (long long)h * D * Df;
  const T* wk = static_cast<const T*>(p.feature_k) + (long long)h * D * Df;
  for (int item = tid; item < 2 * Df; item += kThreads) {
    const bool is_k = item >= Df;
    const int f = is_k ? item - Df : item;
    const float* x = is_k ? s.k_rot : s.q_rot;
    const T* w = (is_k ? wk : wq) + f;
    float z = 0.f;
#pragma unroll 16
    for (int d = 0; d < D; ++d) z = fmaf(x[d], ld(w + (long long)d * Df), z);
    (is_k ? s.phi_k : s.phi_q)[f] = rnd<T>(z);
  }
  __syncthreads();
  const bool has = tid < Df;
  const float zq = has ? s.phi_q[tid] : 0.f, zk = has ? s.phi_k[tid] : 0.f;
  float mx[4] = {has ? zq : -INFINITY, has ? zk : -INFINITY, has ? -zq : -INFINITY, has ? -zk : -INFINITY};
  block_reduce(mx, s.red, Max());
  float ex[4] = {has ? expf(zq - mx[0]) : 0.f, has ? expf(zk - mx[1]) : 0.f, has ? expf(-zq - mx[2]) : 0.f,
                 has ? expf(-zk - mx[3]) : 0.f};
  float sum[4] = {ex[0], ex[1], ex[2], ex[3]};
  block_reduce(sum, s.red, Sum());
  if (has) {
    s.phi_q[tid] = rnd<T>(ex[0] / sum[0]);
    s.phi_k[tid] = rnd<T>(ex[1] / sum[1]);
    if (p.pm_features) {
      s.phi_q[Df + tid] = rnd<T>(ex[2] / sum[2]);
      s.phi_k[Df + tid] = rnd<T>(ex[3] / sum[3]);
    }
  }
  __syncthreads();
}

// Phase 3: the mLSTM update in place and the normalised readout; returns this
// thread's output column (tid < D), rounded to the model dtype.
template <typename T>
__device__ __forceinline__ float mlstm_update(const StudentDecodeStepParams& p, const Smem& s, int bh, float a, float e, float m_new) {
  constexpr int kRowsInFlight = 8;
  const int tid = threadIdx.x, D = p.D, Dk = p.Dk;
  float* C = p.C + (long long)bh * Dk * D;
  float* n = p.n + (long long)bh * Dk;
  const int cols = D / 4;               // float4 columns of a row
  const int rows_par = kThreads / cols;  // rows updated side by side
  const int col = tid % cols, row0 = tid / cols;
  const float4 v4 = make_float4(s.v_row[4 * col], s.v_row[4 * col + 1], s.v_row[4 * col + 2], s.v_row[4 * col + 3]);
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int i0 = row0; i0 < Dk; i0 += kRowsInFlight * rows_par) {
    float4 c[kRowsInFlight];
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      const int i = i0 + u * rows_par;
      if (i < Dk) c[u] = *reinterpret_cast<const float4*>(C + (long long)i * D + 4 * col);
    }
#pragma unroll
    for (int u = 0; u < kRowsInFlight; ++u) {
      const int i = i0 + u * rows_par;
      if (i >= Dk) break;
      const float ek = __fmul_rn(e, s.phi_k[i]), qs = __fmul_rn(s.phi_q[i], p.inv_sqrt_dk);
      float4 x = c[u];
      x.x = __fadd_rn(__fmul_rn(x.x, a), __fmul_rn(ek, v4.x));
      x.y = __fadd_rn(__fmul_rn(x.y, a), __fmul_rn(ek, v4.y));
      x.z = __fadd_rn(__fmul_rn(x.z, a), __fmul_rn(ek, v4.z));
      x.w = __fadd_rn(__fmul_rn(x.w, a), __fmul_rn(ek, v4.w));
      *reinterpret_cast<float4*>(C + (long long)i * D + 4 * col) = x;
      acc.x = fmaf(qs, x.x, acc.x);
      acc.y = fmaf(qs, x.y, acc.y);
      acc.z = fmaf(qs, x.z, acc.z);
      acc.w = fmaf(qs, x.w, acc.w);
    }
  }
  float* part = s.part + row0 * D + 4 * col;
  part[0] = acc.x;
  part[1] = acc.y;
  part[2] = acc.z;
  part[3] = acc.w;
  float qn[1] = {0.f};
  for (int i = tid; i < Dk; i += kThreads) {
    const float nn = __fadd_rn(__fmul_rn(n[i], a), __fmul_rn(e, s.phi_k[i]));
    n[i] = nn;
    qn[0] = fmaf(__fmul_rn(s.phi_q[i], p.inv_sqrt_dk), nn, qn[0]);
  }
  block_reduce(qn, s.red, Sum());  // its barrier also publishes `part`
  if (tid >= D) return 0.f;
  float num = 0.f;
  for (int r = 0; r < rows_par; ++r) num += s.part[r * D + tid];
  const float den = fmaxf(fabsf(qn[0]), expf(-m_new)) + p.eps;
  return rnd<T>(num / den);
}

// Phase 4: writes the token's k, v into the ring (and sink) slot, then attends over
// the visible ring slots and sinks. Returns this thread's output column (tid < D).
template <typename T>
__device__ __forceinline__ float window_attention(const StudentDecodeStepParams& p, const Smem& s, int bhk, long long t) {
  constexpr int E = Vec<T>::n;
  constexpr int kInFlight = 4;  // key/value rows loaded before they are used
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, D = p.D;
  const int W = p.window, S = p.sinks, NK = S + W;
  const int cur = static_cast<int>(t % W), sink_slot = static_cast<int>(t < S ? t : S);
  T* ring_k = static_cast<T*>(p.ring_k) + (long long)bhk * W * D;
  T* ring_v = static_cast<T*>(p.ring_v) + (long long)bhk * W * D;
  T* sink_k = static_cast<T*>(p.sink_k) + (long long)bhk * (S + 1) * D;
  T* sink_v = static_cast<T*>(p.sink_v) + (long long)bhk * (S + 1) * D;
  if (tid < D) {
    st(ring_k + (long long)cur * D + tid, s.k_rot[tid]);
    st(ring_v + (long long)cur * D + tid, s.v_row[tid]);
    st(sink_k + (long long)sink_slot * D + tid, s.k_rot[tid]);
    st(sink_v + (long long)sink_slot * D + tid, s.v_row[tid]);
  }
  __syncthreads();  // the block's global writes are visible to the block after it
  // Key kk < S is sink kk (counted once it left the window), else ring slot kk - S
  // (written once it is <= t or the ring has wrapped). The scratch sink slot S and
  // the sink slot of a short row (t - t < W) are never visible.
  auto visible = [&](int kk) { return kk < NK && (kk < S ? t - kk >= W : (t >= W || kk - S <= t)); };
  auto row = [&](T* sinks, T* ring, int kk) { return (kk < S ? sinks + (long long)kk * D : ring + (long long)(kk - S) * D); };
  const int lanes_per_key = D / E, keys_per_warp = 32 / lanes_per_key;
  const int sub = lane / lanes_per_key, d0 = (lane % lanes_per_key) * E;
  float qr[E];
  load_vec_smem(s.q_rot + d0, qr);
  const int key_stride = kWarps * keys_per_warp;
  for (int base = warp * keys_per_warp + sub; base - sub < NK; base += kInFlight * key_stride) {
    float kr[kInFlight][E];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int kk = base + u * key_stride;
      if (visible(kk)) load_vec(row(sink_k, ring_k, kk) + d0, kr[u]);
      else
#pragma unroll
        for (int i = 0; i < E; ++i) kr[u][i] = 0.f;
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int kk = base + u * key_stride;
      float dot = 0.f;
#pragma unroll
      for (int i = 0; i < E; ++i) dot = fmaf(qr[i], kr[u][i], dot);
      for (int off = lanes_per_key / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      if (lane % lanes_per_key == 0 && kk < NK) s.probs[kk] = visible(kk) ? rnd<T>(dot) * p.scale : -INFINITY;
    }
  }
  __syncthreads();
  float mx[1] = {-INFINITY};
  for (int kk = tid; kk < NK; kk += kThreads) mx[0] = fmaxf(mx[0], s.probs[kk]);
  block_reduce(mx, s.red, Max());
  float sum[1] = {0.f};
  for (int kk = tid; kk < NK; kk += kThreads) {
    const float x = expf(s.probs[kk] - mx[0]);
    s.probs[kk] = x;
    sum[0] += x;
  }
  block_reduce(sum, s.red, Sum());
  for (int kk = tid; kk < NK; kk += kThreads) s.probs[kk] = rnd<T>(s.probs[kk] / sum[0]);
  __syncthreads();
  // Probabilities times values: groups of lanes_per_key threads take one value row
  // at a time; sinks and ring are summed apart (two matmuls in the ATen step).
  // Rows of probability 0 (masked, or underflowed) add 0 * v and are not read.
  const int groups = kThreads / lanes_per_key, group = tid / lanes_per_key;
  float acc_s[E], acc_r[E];
#pragma unroll
  for (int i = 0; i < E; ++i) acc_s[i] = acc_r[i] = 0.f;
  for (int kk0 = group; kk0 < NK; kk0 += kInFlight * groups) {
    float vr[kInFlight][E], pk[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int kk = kk0 + u * groups;
      pk[u] = kk < NK ? s.probs[kk] : 0.f;
      if (pk[u] != 0.f) load_vec(row(sink_v, ring_v, kk) + d0, vr[u]);
      else
#pragma unroll
        for (int i = 0; i < E; ++i) vr[u][i] = 0.f;
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      if (kk0 + u * groups < S) {
#pragma unroll
        for (int i = 0; i < E; ++i) acc_s[i] = fmaf(pk[u], vr[u][i], acc_s[i]);
      } else {
#pragma unroll
        for (int i = 0; i < E; ++i) acc_r[i] = fmaf(pk[u], vr[u][i], acc_r[i]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < E; ++i) {
    s.part[group * D + d0 + i] = acc_s[i];
    s.part[(groups + group) * D + d0 + i] = acc_r[i];
  }
  __syncthreads();
  if (tid >= D) return 0.f;
  float from_sinks = 0.f, from_ring = 0.f;
  for (int g = 0; g < groups; ++g) {
    from_sinks += s.part[g * D + tid];
    from_ring += s.part[(groups + g) * D + tid];
  }
  return rnd<T>(__fadd_rn(rnd<T>(from_sinks), rnd<T>(from_ring)));
}

}  // namespace
}  // namespace xd::kernels::decode_step

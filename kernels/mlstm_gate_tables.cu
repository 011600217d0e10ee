// The per-position gate tables of the chunkwise mLSTM in one kernel (float64
// arithmetic, float32 tables), and the backward's normaliser terms in another;
// both replace a few dozen small ATen passes. Math: kernels/README.md.
//   b_t  = in-chunk cumulative log sigmoid(f),  u_t = max_{j<=t}(i_j - b_j)
//   m_end_c = g_c + max(m_end_{c-1}, u_last_c)   (m_end_{-1} = m0, g_c = b at the chunk's end)
//   m_t = b_t + max(m_start, u_t); row_log = b_t - m_t; col_log = i_t - b_t;
//   carry = exp(b_t + m_start - m_t); key_w = exp(g - b_t + i_t - m_end); decay = exp(g + m_start - m_end).
// One block per head; a warp scans one chunk at a time (lane = L/32 consecutive
// positions, warp-wide inclusive scans), thread 0 runs the chunk-to-chunk recurrence.
#include <cmath>

#include "mlstm_params.h"

namespace xd::kernels {
namespace {

constexpr int kTableThreads = 256;
constexpr int kMaxPerLane = 4;  // L <= 128

__device__ __forceinline__ double log_sigmoid(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }

// Per-lane positions of chunk c: b (cumulative log forget gate), ip (i, -inf past S), u (prefix max of ip - b).
struct ChunkScan {
  double b[kMaxPerLane], ip[kMaxPerLane], u[kMaxPerLane];
  double g, u_last;
};

__device__ void scan_chunk(ChunkScan& cs, const GateTablesParams& p, int bh, int c, int per_lane) {
  const int lane = threadIdx.x % 32;
  const int t0 = c * p.L + lane * per_lane;
  double run = 0.0;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    if (e >= per_lane) break;
    const int t = t0 + e;
    const bool in = t < p.S;
    run += in ? log_sigmoid((double)p.f[(size_t)bh * p.S + t]) : 0.0;
    cs.b[e] = run;
    cs.ip[e] = in ? (double)p.i[(size_t)bh * p.S + t] : -INFINITY;
  }
  double prefix = run;  // inclusive scan of the lane totals
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const double x = __shfl_up_sync(0xffffffffu, prefix, off);
    if (lane >= off) prefix += x;
  }
  const double before = prefix - run;
  double mx = -INFINITY;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    if (e >= per_lane) break;
    cs.b[e] += before;
    mx = fmax(mx, cs.ip[e] - cs.b[e]);
    cs.u[e] = mx;
  }
  double pm = mx;  // inclusive prefix max of the lane maxima
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const double x = __shfl_up_sync(0xffffffffu, pm, off);
    if (lane >= off) pm = fmax(pm, x);
  }
  double carry_in = __shfl_up_sync(0xffffffffu, pm, 1);
  if (lane == 0) carry_in = -INFINITY;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; ++e) {
    if (e >= per_lane) break;
    cs.u[e] = fmax(cs.u[e], carry_in);
  }
  cs.g = __shfl_sync(0xffffffffu, prefix, 31);
  cs.u_last = __shfl_sync(0xffffffffu, pm, 31);
}

__global__ void __launch_bounds__(kTableThreads) gate_tables_kernel(GateTablesParams p) {
  extern __shared__ double table_smem[];  // [NC] g, [NC] u_last -> m_start, m_end
  double* g_s = table_smem;
  double* u_s = g_s + p.NC;
  const int bh = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warps = kTableThreads / 32, per_lane = p.L / 32;
  for (int c = warp; c < p.NC; c += warps) {
    ChunkScan cs;
    scan_chunk(cs, p, bh, c, per_lane);
    if (lane == 0) {
      g_s[c] = cs.g;
      u_s[c] = cs.u_last;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // m_start replaces u_last, m_end replaces g
    double m = p.m0 ? (double)p.m0[bh] : 0.0;
    for (int c = 0; c < p.NC; ++c) {
      const double start = m;
      m = g_s[c] + fmax(m, u_s[c]);
      u_s[c] = start;
      g_s[c] = m;
    }
    p.m_final[bh] = (float)m;
  }
  __syncthreads();
  const size_t row = (size_t)bh * p.S_pad;
  for (int c = warp; c < p.NC; c += warps) {
    ChunkScan cs;
    scan_chunk(cs, p, bh, c, per_lane);
    const double m_start = u_s[c], m_end = g_s[c];
    if (lane == 0) p.decay[(size_t)bh * p.NC + c] = (float)exp(cs.g + m_start - m_end);
#pragma unroll
    for (int e = 0; e < kMaxPerLane; ++e) {
      if (e >= per_lane) break;
      const size_t t = row + (size_t)c * p.L + lane * per_lane + e;
      const double m = cs.b[e] + fmax(m_start, cs.u[e]);
      p.m_pos[t] = (float)m;
      const double row = cs.b[e] - m, col = cs.ip[e] - cs.b[e];
      p.row_log[t] = (float)row;
      p.col_log[t] = (float)col;
      if (p.row_log_lo) {  // col is -inf past S: its residue is 0, not NaN
        p.row_log_lo[t] = (float)(row - (double)(float)row);
        p.col_log_lo[t] = isfinite(col) ? (float)(col - (double)(float)col) : 0.f;
      }
      p.carry[t] = (float)exp(cs.b[e] + m_start - m);
      p.key_w[t] = (float)exp(cs.g - cs.b[e] + cs.ip[e] - m_end);
    }
  }
}

__global__ void normaliser_terms_kernel(NormaliserTermsParams p) {
  const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (size_t)p.BH * p.S_pad) return;
  const int bh = (int)(idx / p.S_pad), t = (int)(idx % p.S_pad);
  if (t >= p.S) {
    p.inv_den[idx] = p.ddn[idx] = p.row_w[idx] = p.vec_w[idx] = 0.f;
    return;
  }
  const size_t st = (size_t)bh * p.S + t;
  const float dn = p.dn[st], gh = p.gh[st], floor_ = expf(-p.m_pos[idx]);
  const float den = fmaxf(fabsf(dn), floor_) + p.eps;
  const float inv = 1.f / den;
  const float sign = dn > 0.f ? 1.f : (dn < 0.f ? -1.f : 0.f);
  const float ddn = fabsf(dn) > floor_ ? -gh / den * sign : 0.f;
  p.inv_den[idx] = inv;
  p.ddn[idx] = ddn;
  p.row_w[idx] = p.carry[idx] * inv;
  p.vec_w[idx] = p.carry[idx] * ddn;
  p.dm_direct[st] = -gh * p.eps / den;
}

}  // namespace

bool mlstm_gate_tables_supported(int L, int NC) { return (L == 64 || L == 128) && NC <= kMaxTableChunks; }

void mlstm_gate_tables(const GateTablesParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(double) * 2 * p.NC;
  if (smem > 48 * 1024) cudaFuncSetAttribute(gate_tables_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  gate_tables_kernel<<<p.BH, kTableThreads, smem, stream>>>(p);
}

void mlstm_normaliser_terms(const NormaliserTermsParams& p, cudaStream_t stream) {
  const size_t n = (size_t)p.BH * p.S_pad;
  normaliser_terms_kernel<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(p);
}

}  // namespace xd::kernels

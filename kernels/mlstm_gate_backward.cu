// Gate gradients of the mLSTM, sequential per head (one thread each):
//   dlf_s = sum_{t>=s} (q~_t.dq~_t - k_t.dk_t) + <C_S,dC_S> + <n_S,dn_S>   (stabilisers constant)
//           (or p.dlf_cross[s], the same value summed without cancellation)
//   di_t  = k_t.dk_t
// plus the stabiliser's own path: dL/dm_t = -(dh_t.h_t) eps / den_t flows back
// through m_t = max(lf_t + m_{t-1}, i_t) into lf_t (and on to m_{t-1}) or i_t.
// Sums run in float64.
#include "mlstm_common.cuh"
#include "mlstm_params.h"

namespace xd::kernels {
namespace {

__global__ void gate_backward_kernel(GateBackwardParams p) {
  const int bh = blockIdx.x * blockDim.x + threadIdx.x;
  if (bh >= p.BH) return;
  const size_t base = (size_t)bh * p.S;
  // Restrict-qualified views: the loads of later positions do not depend on the
  // stores, so the compiler may issue them ahead (the loop is latency-bound).
  const float* __restrict__ q_dot = p.q_dot_dq + base;
  const float* __restrict__ k_dot = p.k_dot_dk + base;
  const float* __restrict__ dm_direct = p.dm_direct + base;
  const float* __restrict__ f_in = p.f + base;
  const float* __restrict__ i_in = p.i + base;
  const float* __restrict__ m_pos = p.m_pos + base;
  float* __restrict__ di_out = p.di + base;
  float* __restrict__ df_out = p.df + base;
  const double state_dot = p.state_dot[bh];
  double acc_f = state_dot;
  double acc_m = (p.dm_final ? p.dm_final[bh] : 0.0) - state_dot;
  const float m_init = p.m0 ? p.m0[bh] : 0.f;
#pragma unroll 8
  for (int t = p.S - 1; t >= 0; --t) {
    const float f = f_in[t], it = i_in[t], m = m_pos[t];
    const float m_prev = t > 0 ? m_pos[t - 1] : m_init;
    const float lf = fminf(f, 0.f) - log1pf(expf(-fabsf(f)));  // log sigmoid(f)
    const bool carried = fabsf(m - (lf + m_prev)) <= fabsf(m - it);
    const float kdk = k_dot[t];
    acc_m += dm_direct[t];
    acc_f += (double)q_dot[t] - (double)kdk;
    double dlf = p.dlf_cross ? (double)p.dlf_cross[base + t] : acc_f, di = kdk;
    if (carried) {
      dlf += acc_m;
    } else {
      di += acc_m;
      acc_m = 0.0;
    }
    const float sig_neg = 1.f / (1.f + expf(f));  // d log sigmoid(f) / df = sigmoid(-f)
    df_out[t] = (float)(dlf * sig_neg);
    di_out[t] = (float)di;
  }
  p.dm0[bh] = (float)acc_m;
}

// The same recurrence, one block per head: each thread walks a contiguous
// segment of positions twice. Pass 1 reduces its segment to (the forget sum,
// the stabiliser path's value with zero coming in, whether the path runs through
// the whole segment); thread 0 chains the segments from the right (float64);
// pass 2 repeats the sequential loop with the true incoming sums.
constexpr int kGateThreads = 256;

struct GateView {
  const float* __restrict__ q_dot;
  const float* __restrict__ k_dot;
  const float* __restrict__ dm_direct;
  const float* __restrict__ f;
  const float* __restrict__ i;
  const float* __restrict__ m_pos;
  float m_init;
  __device__ bool carried(int t, float& sig_neg) const {
    const float ft = f[t], m = m_pos[t];
    const float m_prev = t > 0 ? m_pos[t - 1] : m_init;
    const float lf = fminf(ft, 0.f) - log1pf(expf(-fabsf(ft)));
    sig_neg = 1.f / (1.f + expf(ft));
    return fabsf(m - (lf + m_prev)) <= fabsf(m - i[t]);
  }
};

__global__ void __launch_bounds__(kGateThreads) gate_backward_parallel_kernel(GateBackwardParams p) {
  __shared__ double seg_f[kGateThreads], seg_m[kGateThreads], in_f[kGateThreads], in_m[kGateThreads];
  __shared__ bool seg_pass[kGateThreads];
  const int bh = blockIdx.x, tid = threadIdx.x;
  const size_t base = (size_t)bh * p.S;
  const GateView gv{p.q_dot_dq + base, p.k_dot_dk + base, p.dm_direct + base, p.f + base, p.i + base,
                    p.m_pos + base, p.m0 ? p.m0[bh] : 0.f};
  const int per = (p.S + kGateThreads - 1) / kGateThreads;
  const int a = min(p.S, tid * per), b = min(p.S, a + per);
  double f_sum = 0.0, m_val = 0.0;
  bool pass = true;
  for (int t = b - 1; t >= a; --t) {
    float sig_neg;
    const bool carried = gv.carried(t, sig_neg);
    f_sum += (double)gv.q_dot[t] - (double)gv.k_dot[t];
    m_val += gv.dm_direct[t];
    if (!carried) {
      m_val = 0.0;
      pass = false;
    }
  }
  seg_f[tid] = f_sum;
  seg_m[tid] = m_val;
  seg_pass[tid] = pass;
  __syncthreads();
  if (tid == 0) {
    const double state_dot = p.state_dot[bh];
    double acc_f = state_dot, acc_m = (p.dm_final ? p.dm_final[bh] : 0.0) - state_dot;
    for (int s = kGateThreads - 1; s >= 0; --s) {
      in_f[s] = acc_f;
      in_m[s] = acc_m;
      acc_f += seg_f[s];
      acc_m = seg_pass[s] ? acc_m + seg_m[s] : seg_m[s];
    }
    p.dm0[bh] = (float)acc_m;
  }
  __syncthreads();
  double acc_f = in_f[tid], acc_m = in_m[tid];
  for (int t = b - 1; t >= a; --t) {
    float sig_neg;
    const bool carried = gv.carried(t, sig_neg);
    const float kdk = gv.k_dot[t];
    acc_m += gv.dm_direct[t];
    acc_f += (double)gv.q_dot[t] - (double)kdk;
    double dlf = p.dlf_cross ? (double)p.dlf_cross[base + t] : acc_f, di = kdk;
    if (carried) {
      dlf += acc_m;
    } else {
      di += acc_m;
      acc_m = 0.0;
    }
    p.df[base + t] = (float)(dlf * sig_neg);
    p.di[base + t] = (float)di;
  }
}

// out[r] = sum_c a[r,c] b[r,c] in fp32, one warp per row.
template <typename T>
__global__ void row_dot_kernel(const T* __restrict__ a, const T* __restrict__ b, float* __restrict__ out, int rows,
                               int cols) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  float s = 0.f;
  for (int c = lane; c < cols; c += 32) s = fmaf(to_float(a[(size_t)row * cols + c]), to_float(b[(size_t)row * cols + c]), s);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) out[row] = s;
}

}  // namespace

void mlstm_row_dot(const void* a, const void* b, DType dtype, float* out, int rows, int cols, cudaStream_t stream) {
  constexpr int kRowsPerBlock = 8;
  const int blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  switch (dtype) {
    case DType::F32:
      row_dot_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream>>>(static_cast<const float*>(a), static_cast<const float*>(b), out, rows, cols);
      break;
    case DType::BF16:
      row_dot_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream>>>(static_cast<const __nv_bfloat16*>(a),
                                                               static_cast<const __nv_bfloat16*>(b), out, rows, cols);
      break;
    case DType::F16:
      row_dot_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream>>>(static_cast<const __half*>(a), static_cast<const __half*>(b),
                                                               out, rows, cols);
      break;
  }
}

void mlstm_gate_backward(const GateBackwardParams& p, cudaStream_t stream) {
  if (!p.sequential) {
    gate_backward_parallel_kernel<<<p.BH, kGateThreads, 0, stream>>>(p);
    return;
  }
  constexpr int kPerBlock = 32;
  gate_backward_kernel<<<(p.BH + kPerBlock - 1) / kPerBlock, kPerBlock, 0, stream>>>(p);
}

}  // namespace xd::kernels

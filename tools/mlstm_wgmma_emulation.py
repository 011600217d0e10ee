#!/usr/bin/env python3
"""What the wgmma forward's roundings cost, on the CPU in float64.

kernels/sm90a/mlstm_wgmma_forward.cu rounds C_{k-1}, P and w o k to bf16 once where the
mma.sync kernels split them hi + lo (about 16 bits), and keeps n, q.n and sum_j P in
fp32 (n enters its product as bf16 hi + lo). This replays the chunkwise forward (chunk
64) in float64 with exactly those roundings, and with the mma.sync kernels' hi + lo
ones, and prints the relative L2 error of h (rounded to bf16, as stored), the final C
and the final n against the recurrent definition in float64: the error the GPU parity
test (MlstmCuda.WgmmaForwardMatchesFloat64Oracle, bound 1e-2) should see, up to the
fp32 accumulation order. Inputs are drawn the way test::random_mlstm draws them.

    python3 tools/mlstm_wgmma_emulation.py [SEED]
"""
import math
import sys

import torch

from mlstm_h_rounding_emulation import EPS, F64, bf16, recurrent  # the float64 definition

L = 64


def f32(x):
    return x.to(torch.float32).to(F64)


def hi_lo(x):
    """x to ~16 significant bits: bf16 hi + bf16 lo."""
    h = bf16(x)
    return h + bf16(x - h)


def chunkwise(q, k, v, i, f, mode):
    """mode "wgmma": C, P, w o k rounded once; "mma": the mma.sync kernels' hi + lo."""
    B, H, S, D = q.shape
    scale = 1 / math.sqrt(D)
    C = torch.zeros(B, H, D, v.shape[-1], dtype=F64)
    n = torch.zeros(B, H, D, dtype=F64)
    m_prev = torch.zeros(B, H, dtype=F64)
    lf_all = torch.nn.functional.logsigmoid(f)
    hs = []
    for c0 in range(0, S, L):
        qc, kc, vc = q[..., c0:c0 + L, :], k[..., c0:c0 + L, :], v[..., c0:c0 + L, :]
        ic, lf = i[..., c0:c0 + L], lf_all[..., c0:c0 + L]
        T = qc.shape[-2]
        b = torch.cumsum(lf, -1)
        u = torch.cummax(ic - b, -1).values
        m = b + torch.maximum(m_prev[..., None], u)
        g, m_end = b[..., -1], b[..., -1] + torch.maximum(m_prev, u[..., -1])
        row_log, col_log = f32(b - m), f32(ic - b)  # the tables are float32
        carry = f32(torch.exp(b + m_prev[..., None] - m))
        key_w = f32(torch.exp(g[..., None] - b + ic - m_end[..., None]))
        decay = f32(torch.exp(g + m_prev - m_end))

        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        P = f32(torch.where(causal, scale * (qc @ kc.transpose(-1, -2)) * torch.exp(row_log[..., :, None] +
                                                                                   col_log[..., None, :]), 0.0))
        n_in = hi_lo(n)  # both kernels: n as hi + lo (fp32 n, then the FMA q.n in the mma kernel)
        if mode == "wgmma":
            hs_c, P_op, wk = qc @ bf16(C), bf16(P), bf16(key_w[..., :, None] * kc)
        else:
            hs_c, P_op, wk = qc @ hi_lo(C), hi_lo(P), kc
        dn = scale * carry * (qc * n_in[..., None, :]).sum(-1) + P.sum(-1)
        num = (scale * carry)[..., None] * hs_c + P_op @ vc
        den = torch.maximum(dn.abs(), torch.exp(-m)) + EPS
        hs.append(bf16(num / den[..., None]))
        # state update: wgmma rounds w o k; the mma kernels split w o v hi + lo
        if mode == "wgmma":
            C = f32(decay[..., None, None] * C + wk.transpose(-1, -2) @ vc)
        else:
            C = f32(decay[..., None, None] * C + kc.transpose(-1, -2) @ hi_lo(key_w[..., :, None] * vc))
        n = f32(decay[..., None] * n + (key_w[..., :, None] * kc).sum(-2))
        m_prev = m_end
    return torch.cat(hs, 2), C, n


def rel(x, ref):
    return ((x - ref).norm() / ref.norm()).item()


def main():
    seed0 = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
    shapes = [(2, 3, 200, 64, 48), (1, 2, 128, 128, 128), (2, 2, 333, 32, 96), (1, 2, 65, 128, 64),
              (1, 4, 1000, 128, 128)]
    print(f"{'shape':30}{'mode':8}{'h':>10}{'C':>10}{'n':>10}")
    for s, (B, H, S, Dk, Dv) in enumerate(shapes):
        torch.manual_seed(seed0 + s)  # test::random_mlstm's order: q, k, v, i, f
        q, k = torch.randn(B, H, S, Dk, dtype=F64), torch.randn(B, H, S, Dk, dtype=F64)
        v = torch.randn(B, H, S, Dv, dtype=F64)
        i = 2 * torch.randn(B, H, S, dtype=F64) - 1
        f = 2 * torch.randn(B, H, S, dtype=F64) + 2
        q, k, v, i, f = bf16(q), bf16(k), bf16(v), f32(i), f32(f)  # what the kernels see
        h_ref, C_ref, n_ref = recurrent(q, k, v, i, f)
        for mode in ("mma", "wgmma"):
            h, C, n = chunkwise(q, k, v, i, f, mode)
            name = f"B={B} H={H} S={S} Dk={Dk} Dv={Dv}"
            print(f"{name:30}{mode:8}{rel(h, h_ref):10.2e}{rel(C, C_ref):10.2e}{rel(n, n_ref):10.2e}")


if __name__ == "__main__":
    main()

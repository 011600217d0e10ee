#!/usr/bin/env python3
"""How much of the bf16 parity bound the parity test spends on its own rounding.

MlstmCuda's check_case (tests/ops/test_mlstm_cuda.cpp) projects each output on a random
float64 tensor: loss = sum h*gh + sum C*gC + sum n*gn + sum m*gm. The kernels' h is
bf16, so the upstream gradient they receive is gh rounded to bf16 (and gC, gn, gm
rounded to float32); the float64 oracle receives gh exactly. Its gradients are then
those of another upstream gradient. This replays a test draw in float64 on the CPU
(recurrent definition, the draw order of test::random_mlstm and run_with_grads) and
prints each gradient's relative L2 distance between the exact and the rounded upstream
gradient: the part of the kernel's measured error that no kernel can remove.

    .venv/bin/python tools/mlstm_upstream_rounding.py [SEED B H S Dk Dv STATE]
    (default: 900 2 3 200 64 48 1, ScanColumnSlicesMatchFloat64Oracle's first draw)
"""
import math
import sys

import torch

F64 = torch.float64
EPS = 1e-6


def outputs(q, k, v, i, f, C, n, m):
    """The recurrent mLSTM from the state (C, n, m): h [B,H,S,Dv] and the final state."""
    Dk = q.shape[-1]
    hs = []
    for t in range(q.shape[2]):
        lf = torch.nn.functional.logsigmoid(f[..., t])
        mn = torch.maximum(lf + m, i[..., t])
        a, e = torch.exp(lf + m - mn), torch.exp(i[..., t] - mn)
        C = a[..., None, None] * C + e[..., None, None] * k[..., t, :, None] * v[..., t, None, :]
        n = a[..., None] * n + e[..., None] * k[..., t, :]
        m = mn
        qs = q[..., t, :] / math.sqrt(Dk)
        den = torch.maximum((qs * n).sum(-1).abs(), torch.exp(-m)) + EPS
        hs.append(torch.einsum("bhd,bhde->bhe", qs, C) / den[..., None])
    return torch.stack(hs, 2), C, n, m


def main():
    a = [int(x) for x in sys.argv[1:]]
    seed, B, H, S, Dk, Dv, state = a if len(a) == 7 else (900, 2, 3, 200, 64, 48, 1)
    torch.manual_seed(seed)  # test::random_mlstm's order
    q, k, v = (torch.randn(B, H, S, d, dtype=F64) for d in (Dk, Dk, Dv))
    i = 2 * torch.randn(B, H, S, dtype=F64) - 1
    f = 2 * torch.randn(B, H, S, dtype=F64) + 2
    if state:
        C0, n0, m0 = torch.randn(B, H, Dk, Dv, dtype=F64), torch.randn(B, H, Dk, dtype=F64), torch.randn(B, H, dtype=F64)
    else:
        C0, n0, m0 = torch.zeros(B, H, Dk, Dv, dtype=F64), torch.zeros(B, H, Dk, dtype=F64), torch.zeros(B, H, dtype=F64)
    bf16 = lambda t: t.to(torch.bfloat16).to(F64)
    f32 = lambda t: t.float().to(F64)
    # What the kernels see: q, k, v in bf16, gates and the initial state in float32.
    leaves = [bf16(q), bf16(k), bf16(v), f32(i), f32(f), f32(C0), f32(n0), f32(m0)]
    leaves = [t.clone().requires_grad_() for t in leaves]
    h, C, n, m = outputs(*leaves)
    gen = torch.Generator().manual_seed(seed + 1)  # run_with_grads' projections, drawn m, n, C, h
    proj = [torch.randn(t.shape, generator=gen, dtype=F64) for t in (m, n, C, h)][::-1]
    names = ["q", "k", "v", "i", "f", "C0", "n0", "m0"][: 8 if state else 5]
    grads = {}
    for label, g in (("exact", proj), ("rounded", [bf16(proj[0])] + [f32(t) for t in proj[1:]])):
        loss = sum((o * w).sum() for o, w in zip((h, C, n, m), g))
        grads[label] = torch.autograd.grad(loss, leaves[: len(names)], retain_graph=True)
    print(f"seed {seed} B={B} H={H} S={S} Dk={Dk} Dv={Dv} state={state}: relative L2 distance of each gradient")
    print("between the exact upstream gradient and the one the bf16 kernels receive")
    print("".join(f"{'d' + nm:>10}" for nm in names))
    print("".join(f"{((x - r).norm() / r.norm()).item():10.2e}" for x, r in zip(grads["rounded"], grads["exact"])))


if __name__ == "__main__":
    main()

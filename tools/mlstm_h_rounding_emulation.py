#!/usr/bin/env python3
"""What the bf16 rounding of h does to the mLSTM backward, on the CPU in float64.

The backward needs gh_t = dh_t.h_t for the normaliser (ddn = -sign(dn) gh/den). The
tensor-core kernels used to take h from their bf16 output; this replays the recurrent
definition in float64 with h in that product rounded to bf16 (hi), to bf16 hi + lo
(the residue the forward now keeps, kernels/README.md "h's rounding and the backward"),
or exact, and prints each gradient's relative L2 error against the exact one. The
inputs are MlstmCuda.FusedForwardMatchesFloat64Oracle's draw that failed on the H200
(seed 1001: B=1 H=2 S=128 D=128, no initial state), drawn the way the C++ test draws
them (torch's CPU generator gives the same numbers in C++ and Python).

    .venv/bin/python tools/mlstm_h_rounding_emulation.py [SEED [B H S D]]
"""
import math
import sys

import torch

F64 = torch.float64
EPS = 1e-6


def bf16(x):
    return x.to(torch.bfloat16).to(F64)


class Normalise(torch.autograd.Function):
    """h = num / den with den's gradient formed from h as the kernels see it."""

    @staticmethod
    def forward(ctx, num, den, mode):
        h = num / den[..., None]
        seen = {"exact": h, "hi": bf16(h), "hi+lo": bf16(h) + bf16(h - bf16(h))}[mode]
        ctx.save_for_backward(den, seen)
        return h

    @staticmethod
    def backward(ctx, dh):
        den, seen = ctx.saved_tensors
        return dh / den[..., None], -(dh * seen).sum(-1) / den, None


def recurrent(q, k, v, i, f, normalise=lambda num, den: num / den[..., None]):
    """The recurrent definition in float64: h [B,H,S,Dv] and the final C, n. normalise(num,
    den) forms each h_t (here, with its den gradient as a kernel sees it)."""
    B, H, S, D = q.shape
    C = torch.zeros(B, H, D, v.shape[-1], dtype=F64)
    n = torch.zeros(B, H, D, dtype=F64)
    m = torch.zeros(B, H, dtype=F64)
    hs = []
    for t in range(S):
        lf = torch.nn.functional.logsigmoid(f[..., t])
        mn = torch.maximum(lf + m, i[..., t])
        a, e = torch.exp(lf + m - mn), torch.exp(i[..., t] - mn)
        C = a[..., None, None] * C + e[..., None, None] * k[..., t, :, None] * v[..., t, None, :]
        n = a[..., None] * n + e[..., None] * k[..., t, :]
        qs = q[..., t, :] / math.sqrt(D)
        den = torch.maximum((qs * n).sum(-1).abs(), torch.exp(-mn)) + EPS
        hs.append(normalise(torch.einsum("bhd,bhde->bhe", qs, C), den))
        m = mn
    return torch.stack(hs, 2), C, n


def gradients(x, up, mode):
    leaves = {n: t.clone().requires_grad_() for n, t in x.items()}
    q, k, v, i, f = (leaves[n] for n in "qkvif")
    h, _, _ = recurrent(q, k, v, i, f, lambda num, den: Normalise.apply(num, den, mode))
    loss = (h * up).sum()
    return dict(zip("qkvif", torch.autograd.grad(loss, [q, k, v, i, f])))


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1001
    B, H, S, D = (int(a) for a in sys.argv[2:6]) if len(sys.argv) > 5 else (1, 2, 128, 128)
    torch.manual_seed(seed)  # test::random_mlstm's order: q, k, v, i, f
    x = dict(q=torch.randn(B, H, S, D, dtype=F64), k=torch.randn(B, H, S, D, dtype=F64),
             v=torch.randn(B, H, S, D, dtype=F64))
    x["i"] = 2 * torch.randn(B, H, S, dtype=F64) - 1
    x["f"] = 2 * torch.randn(B, H, S, dtype=F64) + 2
    x = {n: (bf16(t) if n in "qkv" else t.float().to(F64)) for n, t in x.items()}  # what the kernels see
    up = torch.randn(B, H, S, D, dtype=F64)
    ref = gradients(x, up, "exact")
    print("h in dh.h".ljust(12) + "".join(f"{'d' + n:>10}" for n in "qkvif"))
    for mode in ("hi", "hi+lo"):
        g = gradients(x, up, mode)
        print(mode.ljust(12) + "".join(f"{((g[n] - ref[n]).norm() / ref[n].norm()).item():10.2e}" for n in "qkvif"))


if __name__ == "__main__":
    main()

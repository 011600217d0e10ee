#!/usr/bin/env python3
"""The float32 CUDA mLSTM backward (kernels/mlstm_*.cu, FMA path, chunk 64) replayed
step by step in float32 on the CPU, against float64 autograd of the recurrent
definition, on MlstmCuda.Float32MatchesFloat64Oracle's failing shape (S=333, Dk=32,
Dv=96, initial states, upstream gradients on h, C, n, m). Each variant computes one
ingredient in float64 instead, so the ingredient whose rounding dominates a
gradient's error shows as the variant that removes it.

    .venv/bin/python tools/mlstm_kernel_fp32_emulation.py [SEED [B H S Dk Dv L]]   (CPU, under a minute)

Findings: the float32 rounding of col_log (fixed by split logs); then, at S=1000, df
from the reverse cumulative sum of q.dq - k.dk, whose float32 dots cancel over the
sequence (fixed by "cross": the pair sums of kernels/mlstm_backward_chunk.cu).
"""
import math
import sys

import torch

F32, F64 = torch.float32, torch.float64
B, H, S, Dk, Dv, L = 2, 2, 333, 32, 96, 64
if len(sys.argv) > 2:  # seed B H S Dk Dv L
    B, H, S, Dk, Dv, L = (int(a) for a in sys.argv[2:8])
EPS = 1e-6


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)
    x = dict(q=r(B, H, S, Dk), k=r(B, H, S, Dk), v=r(B, H, S, Dv), i=2 * r(B, H, S) - 1, f=2 * r(B, H, S) + 2,
             C0=r(B, H, Dk, Dv), n0=r(B, H, Dk), m0=r(B, H))
    x = {n: t.float().double() for n, t in x.items()}  # the kernels see float32 inputs
    up = dict(h=r(B, H, S, Dv), C=r(B, H, Dk, Dv), n=r(B, H, Dk), m=r(B, H))
    return x, up


def recurrent(x, up):
    """float64 autograd of the recurrent definition: the oracle."""
    leaves = {n: t.clone().requires_grad_() for n, t in x.items()}
    Q, K, V, I, Fg = (leaves[n] for n in "qkvif")
    C, n, m = leaves["C0"], leaves["n0"], leaves["m0"]
    hs = []
    for t in range(S):
        lf = torch.nn.functional.logsigmoid(Fg[..., t])
        mn = torch.maximum(lf + m, I[..., t])
        a, e = torch.exp(lf + m - mn), torch.exp(I[..., t] - mn)
        C = a[..., None, None] * C + e[..., None, None] * K[..., t, :, None] * V[..., t, None, :]
        n = a[..., None] * n + e[..., None] * K[..., t, :]
        qs = Q[..., t, :] / math.sqrt(Dk)
        den = torch.maximum((qs * n).sum(-1).abs(), torch.exp(-mn)) + EPS
        hs.append(torch.einsum("bhd,bhde->bhe", qs, C) / den[..., None])
        m = mn
    h = torch.stack(hs, 2)
    loss = (h * up["h"]).sum() + (C * up["C"]).sum() + (n * up["n"]).sum() + (m * up["m"]).sum()
    names = ["q", "k", "v", "i", "f", "C0", "n0", "m0"]
    return dict(zip(names, torch.autograd.grad(loss, [leaves[n] for n in names])))


def chunks(t):
    """[B,H,S,...] -> [B,H,NC,L,...], zero-padded."""
    NC = (S + L - 1) // L
    pad = [0, 0] * (t.dim() - 3) + [0, NC * L - S]
    return torch.nn.functional.pad(t, pad).unflatten(2, (NC, L))


def tables(i, f, m0):
    """kernels/mlstm_gate_tables.cu, in float64; returned rounded to float32 like the kernel stores them."""
    NC = (S + L - 1) // L
    lf = chunks(torch.nn.functional.logsigmoid(f))
    ip = chunks(i).masked_fill(chunks(torch.ones_like(i)) == 0, -math.inf)
    b = lf.cumsum(-1)
    u = torch.cummax(ip - b, -1).values
    g = b[..., -1]
    m = m0.clone()
    m_start, m_end = [], []
    for c in range(NC):
        m_start.append(m)
        m = g[..., c] + torch.maximum(m, u[..., c, -1])
        m_end.append(m)
    ms, me = torch.stack(m_start, -1)[..., None], torch.stack(m_end, -1)[..., None]
    mpos = b + torch.maximum(ms, u)
    return dict(row_log=b - mpos, col_log=ip - b, carry=torch.exp(b + ms - mpos),
                key_w=torch.exp(g[..., None] - b + ip - me), decay=torch.exp(g + ms[..., 0] - me[..., 0]),
                m_pos=mpos, m_final=m)


def kernel_backward(x, up, exact=()):
    """The kernels' algorithm; `exact` names the ingredients computed in float64."""
    T = lambda name: F64 if name in exact else F32
    tb64 = tables(x["i"], x["f"], x["m0"])
    tb = {n: t.to(T("tables")) for n, t in tb64.items()}

    def weights(dt):
        """D_tj = exp(row_log_t + col_log_j), j <= t. With "split_logs" each log is stored as
        float32 hi + lo and the exponent is (row_hi + col_hi) + (row_lo + col_lo)."""
        if "split_logs" not in exact:
            return torch.exp(tb["row_log"][..., :, None].to(dt) + tb["col_log"][..., None, :].to(dt)).tril()
        hi = {n: tb64[n].float() for n in ("row_log", "col_log")}
        lo = {n: (tb64[n] - hi[n].double()).nan_to_num(0.0).float() for n in hi}
        e = (hi["row_log"][..., :, None] + hi["col_log"][..., None, :]) + (lo["row_log"][..., :, None] + lo["col_log"][..., None, :])
        return torch.exp(e).tril().to(dt)
    q, k, v = (chunks(x[n]) for n in "qkv")
    scale = 1.0 / math.sqrt(Dk)
    NC = q.shape[2]

    def scan(rows, cols, row_w, vec_w, C, n, reverse, dt):
        """kernels/mlstm_chunk_scan.cu: the state entering (or leaving, reversed) each chunk."""
        rows, cols, C, n = rows.to(dt), cols.to(dt), C.to(dt), n.to(dt)
        states, vecs = [None] * NC, [None] * NC
        for step in range(NC):
            c = NC - 1 - step if reverse else step
            states[c], vecs[c] = C, n
            d = tb["decay"][..., c].to(dt)
            wc = (cols[:, :, c] * row_w[:, :, c, :, None].to(dt))
            C = d[..., None, None] * C + rows[:, :, c].transpose(-1, -2) @ wc
            n = d[..., None] * n + (vec_w[:, :, c, :, None].to(dt) * rows[:, :, c]).sum(-2)
        return torch.stack(states, 2), torch.stack(vecs, 2), C, n

    Cst, nst, C_S, n_S = scan(k, v, tb["key_w"], tb["key_w"], x["C0"], x["n0"], False, T("states"))
    Cst, nst = Cst.float(), nst.float()
    # forward output (kernels/mlstm_forward_output.cu), float32 unless "forward"
    dtf = T("forward")
    qs = (q * scale).to(dtf)
    D = weights(dtf)
    P = (qs @ k.to(dtf).transpose(-1, -2)) * D
    carry = tb["carry"].to(dtf)
    num = carry[..., None] * (qs @ Cst.to(dtf)) + P @ v.to(dtf)
    dn = carry * (qs * nst.to(dtf)[..., None, :]).sum(-1) + P.sum(-1)
    floor = torch.exp(-tb["m_pos"].to(dtf))
    den = torch.maximum(dn.abs(), floor) + EPS
    h = (num / den[..., None]).float()  # the kernel stores h in the input dtype
    if "h" in exact:
        h = (num.double() / den.double()[..., None])
    dn = dn.float() if "dn" not in exact else dn.double()

    # normaliser terms (kernels/mlstm_gate_tables.cu normaliser_terms_kernel)
    dt = T("backward")
    dh = chunks(up["h"].float().double()).to(dt)
    gh = (dh * h.to(dt)).sum(-1)
    floor = torch.exp(-tb["m_pos"].to(dt))
    dn_ = dn.to(dt)
    den = torch.maximum(dn_.abs(), floor) + EPS
    inv = 1.0 / den
    ddn = torch.where(dn_.abs() > floor, -gh / den * torch.sign(dn_), torch.zeros_like(gh))
    carry = tb["carry"].to(dt)
    row_w, vec_w = carry * inv, carry * ddn
    dCst, dnst, dC0, dn0 = scan(q * scale, chunks(up["h"].float().double()), row_w, vec_w, up["C"].float().double(),
                                up["n"].float().double(), True, T("dstates"))
    # chunk backward (kernels/mlstm_backward_chunk.cu)
    qs, kk, vv = (q * scale).to(dt), k.to(dt), v.to(dt)
    Cst, nst, dCst, dnst = (t.to(dt) for t in (Cst, nst, dCst, dnst))
    D = weights(dt)
    dNum = dh * inv[..., None]
    A = D * (dNum @ vv.transpose(-1, -2) + ddn[..., None])
    Bm = D * (qs @ kk.transpose(-1, -2))
    key_w = tb["key_w"].to(dt)
    dq = A @ kk + (dNum * carry[..., None]) @ Cst.transpose(-1, -2) + (carry * ddn)[..., None] * nst[..., None, :]
    dk = A.transpose(-1, -2) @ qs + (vv * key_w[..., None]) @ dCst.transpose(-1, -2) + key_w[..., None] * dnst[..., None, :]
    dv = Bm.transpose(-1, -2) @ dNum + (kk * key_w[..., None]) @ dCst
    dq, dk, dv = dq * scale, dk, dv
    dk_out = dk.float()  # stored in the input dtype
    unchunk = lambda t: t.flatten(2, 3)[:, :, :S]
    # kernels/mlstm_gate_backward.cu row_dot: the stored float32 gradients dotted with the inputs
    dot_t = F64 if "dots" in exact else F32
    kdk = unchunk((k.to(dot_t) * dk.float().to(dot_t)).sum(-1)).double()
    qdq = unchunk((q.to(dot_t) * dq.float().to(dot_t)).sum(-1)).double()
    # "cross": the forget-gate gradient as the sum over the pairs (t >= s > j) that the
    # gate's decay spans, from per-chunk pieces (kernels/mlstm_backward_chunk.cu), so that
    # no two long sums cancel; otherwise the reverse cumulative sum of q.dq - k.dk.
    cross = None
    if "cross" in exact:
        G = A * (qs @ kk.transpose(-1, -2))
        Gs = G.tril(-1)
        e = Gs.sum(-1) - Gs.sum(-2)
        e = e + (qs * ((dNum * carry[..., None]) @ Cst.transpose(-1, -2) + (carry * ddn)[..., None] * nst[..., None, :])).sum(-1)
        Ki = (kk * ((vv * key_w[..., None]) @ dCst.transpose(-1, -2) + key_w[..., None] * dnst[..., None, :])).sum(-1)
        X = tb["decay"].to(dt) * ((Cst * dCst).sum((-1, -2)) + (nst * dnst).sum(-1))
        e, Ki = e.float().double(), Ki.float().double()  # the kernel hands them on in float32 ...
        suffix = e.flip(-1).cumsum(-1).flip(-1)  # ... and sums them in float64
        prefix = Ki.cumsum(-1) - Ki
        cross = unchunk(suffix + prefix + X.float().double()[..., None])
    # gate backward (kernels/mlstm_gate_backward.cu), float64 sums
    m_pos = unchunk(tb64["m_pos"]).float().double()
    dm_direct = unchunk(-gh * EPS / den).double()
    state_dot = (C_S.double() * up["C"]).sum((-1, -2)) + (n_S.double() * up["n"]).sum(-1)
    lf = torch.nn.functional.logsigmoid(x["f"].float()).double()
    m_prev = torch.cat([x["m0"][..., None].float().double(), m_pos[..., :-1]], -1)
    carried = (m_pos - (lf + m_prev)).abs() <= (m_pos - x["i"]).abs()
    acc_f, acc_m = state_dot, up["m"] - state_dot
    di, df = torch.zeros(B, H, S, dtype=F64), torch.zeros(B, H, S, dtype=F64)
    for t in range(S - 1, -1, -1):
        acc_m = acc_m + dm_direct[..., t]
        acc_f = acc_f + qdq[..., t] - kdk[..., t]
        c = carried[..., t]
        dlf = acc_f if cross is None else cross[..., t]
        df[..., t] = (dlf + torch.where(c, acc_m, 0 * acc_m)) * torch.sigmoid(-x["f"][..., t])
        di[..., t] = kdk[..., t] + torch.where(c, 0 * acc_m, acc_m)
        acc_m = torch.where(c, acc_m, 0 * acc_m)
    return dict(q=unchunk(dq).float(), k=unchunk(dk_out), v=unchunk(dv).float(), i=di.float(), f=df.float(),
                C0=dC0.float(), n0=dn0.float())


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 102
    x, up = inputs(seed)
    ref = recurrent(x, up)
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    variants = [(), ("tables",), ("tables", "states", "dstates", "forward", "h", "dn", "backward", "cross"), ("states", "dstates"), ("forward",), ("h", "dn"), ("backward",), ("split_logs",),
                ("split_logs", "backward"), ("split_logs", "dots"), ("split_logs", "cross"), ("split_logs", "states", "dstates"), ("split_logs", "forward", "h", "dn"),
                ("tables", "states", "dstates", "forward", "h", "dn", "backward")]
    print("exact in float64".ljust(52) + " ".join(f"{n:>8}" for n in ["dq", "dk", "dv", "di", "df", "dC0"]))
    for ex in variants:
        g = kernel_backward(x, up, ex)
        print((", ".join(ex) or "none (the kernels' float32)").ljust(52) +
              " ".join(f"{rel(g[n], ref[n]):8.2e}" for n in ["q", "k", "v", "i", "f", "C0"]))


if __name__ == "__main__":
    main()

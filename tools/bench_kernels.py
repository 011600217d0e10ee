#!/usr/bin/env python3
"""Sequence-mixer benchmark on the GPU: xdistill's operators (timed by the C++
binary xd_bench_kernels with CUDA events, median) next to torch SDPA (full causal),
FlexAttention (sliding window 512 + 4 sinks) and, where the mlstm_kernels wheel is
carried, its Triton limit_chunk mLSTM, timed here with triton.testing.do_bench
(median), in the same run, bf16.

    python3 tools/bench_kernels.py --bin build-device/xd_bench_kernels [--shapes 8,32,4096,128 2,32,16384,128]

Prints one table (markdown) and the memory floor of the mLSTM:
forward = read q,k,v + write h; forward+backward (fully fused) = that + read
q,k,v,dh + write dq,dk,dv, all bf16, over the copy bandwidth measured in the run.
"""
import argparse
import json
import subprocess

import torch
import torch.nn.functional as F
from triton.testing import do_bench


def time_torch(fn, q, k, v, g):
    fwd = do_bench(lambda: fn(q, k, v), warmup=50, rep=300, return_mode="median")

    def step():
        q.grad = k.grad = v.grad = None
        fn(q, k, v).backward(g)

    return fwd, do_bench(step, warmup=50, rep=300, return_mode="median")


def anchors(B, H, S, D):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    opts = dict(device="cuda", dtype=torch.bfloat16, requires_grad=True)
    q, k, v = (torch.randn(B, H, S, D, **opts) for _ in range(3))
    g = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
    rows = []
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    rows.append(("torch SDPA, full causal", *time_torch(sdpa, q, k, v, g)))

    def window_sinks(b, h, qi, ki):
        return (ki <= qi) & ((qi - ki < 512) | (ki < 4))

    mask = create_block_mask(window_sinks, B=None, H=None, Q_LEN=S, KV_LEN=S)
    flex = torch.compile(flex_attention)
    rows.append(("FlexAttention, window 512 + 4 sinks", *time_torch(lambda q, k, v: flex(q, k, v, block_mask=mask), q, k, v, g)))
    return rows


def mlstm_anchor(B, H, S, D):
    """mlstm_kernels' Triton `limit_chunk` (chunk 64, bf16), the anchors' mLSTM kernel,
    where the package is importable: the GPU machine has no network, so its wheel is
    carried (scripts/device/fetch_wheels.sh). Returns [] without it."""
    try:
        from mlstm_kernels.torch.chunkwise.triton_limit_chunk import mlstm_chunkwise__limit_chunk
    except ImportError as e:
        print(f"(mlstm_kernels not importable, {e}: the Triton anchor is not measured)")
        return []
    opts = dict(device="cuda", dtype=torch.bfloat16)
    q, k, v = (torch.randn(B, H, S, D, **opts).requires_grad_() for _ in range(3))
    i = torch.randn(B, H, S, **opts).requires_grad_()
    f = (torch.randn(B, H, S, device="cuda") + 3.0).to(torch.bfloat16).requires_grad_()
    g = torch.randn(B, H, S, D, **opts)

    def forward():
        return mlstm_chunkwise__limit_chunk(q, k, v, i, f, chunk_size=64, autocast_kernel_dtype=torch.bfloat16)

    def step():
        for t in (q, k, v, i, f):
            t.grad = None
        forward().backward(g)

    fwd = do_bench(forward, warmup=50, rep=300, return_mode="median")
    return [("mlstm_kernels limit_chunk (Triton, chunk 64)", fwd, do_bench(step, warmup=50, rep=300, return_mode="median"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--shapes", nargs="+", default=["8,32,4096,128", "2,32,16384,128"])
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__)
    for shape in args.shapes:
        B, H, S, D = map(int, shape.split(","))
        out = subprocess.run([args.bin, str(B), str(H), str(S), str(D), str(args.reps)], check=True,
                             capture_output=True, text=True).stdout
        ours = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        copy = next(r["GBps"] for r in ours if r["op"] == "copy")
        gemm = next(r["TFLOPs"] for r in ours if r["op"] == "gemm_bf16")
        elems = B * H * S * D
        floor_fwd = 4 * elems * 2 / (copy * 1e6)
        floor_fb = 11 * elems * 2 / (copy * 1e6)
        lines = [f"\n### B={B}, H={H}, S={S}, D={D} (copy {copy:.0f} GB/s, bf16 GEMM {gemm:.0f} TFLOP/s; "
                     f"mLSTM memory floor {floor_fwd:.3f} ms fwd, {floor_fb:.3f} ms fwd+bwd)"]
        lines.append("| kernel | forward ms | forward+backward ms | % of floor (fwd / fwd+bwd) |")
        lines.append("|---|---|---|---|")
        for r in ours:
            if not r["op"].startswith("xd_"):
                continue
            pct = ""
            if "mlstm" in r["op"]:
                pct = f"{100 * floor_fwd / r['fwd_ms']:.0f} % / {100 * floor_fb / r['fwdbwd_ms']:.0f} %"
            lines.append(f"| {r['op']} | {r['fwd_ms']:.3f} | {r['fwdbwd_ms']:.3f} | {pct} |")
        triton, others = mlstm_anchor(B, H, S, D), anchors(B, H, S, D)
        for name, fwd, fb in triton + others:
            lines.append(f"| {name} | {fwd:.3f} | {fb:.3f} | |")
        for name, fwd, fb in others:  # the target: the window no slower than FlexAttention
            if name.startswith("FlexAttention"):
                for r in ours:
                    if r["op"].startswith("xd_window"):
                        lines.append(f"\n{r['op']} / FlexAttention: forward {r['fwd_ms'] / fwd:.2f}x, "
                                     f"forward+backward {r['fwdbwd_ms'] / fb:.2f}x (target <= 1.0x)")
        for name, fwd, fb in triton:  # the target: our mLSTM at most half of it
            for r in ours:
                if r["op"].startswith("xd_") and "mlstm" in r["op"]:
                    lines.append(f"\n{r['op']} / {name}: forward {r['fwd_ms'] / fwd:.2f}x, "
                                 f"forward+backward {r['fwdbwd_ms'] / fb:.2f}x (target <= 0.5x)")
        torch.cuda.empty_cache()
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()

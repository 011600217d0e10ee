#!/usr/bin/env python3
"""Teacher benchmark for the GPU machine (run by the lead on the H200).

  python tools/bench_teacher.py --out bench_teacher.json [--work /tmp/xd_bench] [--bin build/xdistill]

(a) bf16 (and fp32) parity on the GPU for every tiny family checkpoint of
    tests/python/hf_fixtures.py, against transformers on the same GPU;
(b) a random-weight checkpoint with Llama-3.1-8B's exact shapes, made by
    transformers, bf16, 4 shards (kept in --work between runs; --fresh remakes it);
(c) load time to the GPU: `xdistill` (its "model loaded: ..." log line) against raw
    reading of the same shard files into host memory (target: >= 80 % of raw
    throughput), with transformers' from_pretrained as a reference point;
(d) forward throughput at --tokens (4096) tokens, bf16: `xdistill logits --time`
    against transformers' forward in the same run (target >= 1.0x).

Prints a short table and writes every number to --out (JSON).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import hf_fixtures  # noqa: E402

LLAMA31_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
    rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      original_max_position_embeddings=8192),
)


def run(binary, *args):
    proc = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"xdistill {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


# ------------------------------------------------------------------ (a) parity
def bf16_parity(binary, work: Path) -> dict:
    from safetensors.torch import load_file

    results = {}
    for i, variant in enumerate(hf_fixtures.VARIANTS):
        path = hf_fixtures.make_checkpoint(variant, work / "tiny" / variant, seed=i)
        vocab = hf_fixtures.VARIANTS[variant][1]["vocab_size"]
        lines = hf_fixtures.random_token_lines(vocab, [1, 29, 64, 200], seed=1)
        tokens = hf_fixtures.write_token_file(work / "tiny" / f"{variant}.txt", lines)
        row = {}
        refs = {}
        for dtype in (torch.float32, torch.bfloat16):
            model = hf_fixtures.load_hf(path, dtype=dtype, device="cuda")
            with torch.no_grad():
                refs[dtype] = [model(torch.tensor([l], device="cuda")).logits[0].float().cpu() for l in lines]
            del model
        for name in ("f32", "bf16"):
            out = work / "tiny" / f"{variant}_{name}.safetensors"
            run(binary, "logits", "--model", path, "--tokens", tokens, "--out", out, "--dtype", name, "--device", "cuda")
            t = load_file(str(out))
            row[f"xd_{name}_err"] = max(hf_fixtures.rel_l2(t[f"logits.{j}"], refs[torch.float32][j])
                                        for j in range(len(lines)))
        row["hf_bf16_err"] = max(hf_fixtures.rel_l2(refs[torch.bfloat16][j], refs[torch.float32][j])
                                 for j in range(len(lines)))
        row["pass"] = row["xd_f32_err"] <= 1e-4 and row["xd_bf16_err"] <= 2 * row["hf_bf16_err"] + 1e-3
        results[variant] = row
    return results


# ------------------------------------------------------------------ (b) checkpoint
def make_llama8b(work: Path, fresh: bool) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    path = work / "llama31_8b_random"
    if path.exists() and not fresh and (path / "model.safetensors.index.json").exists():
        return path
    cfg = AutoConfig.for_model("llama", **LLAMA31_8B)
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):  # random init on the GPU: seconds instead of minutes
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(path, max_shard_size="5GB")
    shards = sorted(path.glob("model-*.safetensors"))
    print(f"made {path} in {time.time() - t0:.1f} s: {len(shards)} shards", flush=True)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return path


# ------------------------------------------------------------------ (c) load time
def raw_read_seconds(path: Path) -> tuple[float, int]:
    """Reads every shard file into one reused host buffer, in 64 MiB chunks."""
    chunk = 64 << 20
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb", buffering=0) as fh:
            while True:
                n = fh.readinto(view)
                if not n:
                    break
                total += n
    return time.perf_counter() - t0, total


def xd_load_seconds(binary, path: Path, work: Path) -> tuple[float, int]:
    tokens = hf_fixtures.write_token_file(work / "one.txt", [[128000]])
    proc = run(binary, "logits", "--model", path, "--tokens", tokens, "--out", work / "one.safetensors",
               "--dtype", "bf16", "--device", "cuda")
    m = re.search(r"model loaded: (\d+) bytes in ([0-9.e+-]+) s", proc.stderr + proc.stdout)
    if not m:
        raise RuntimeError(f"no 'model loaded' line in:\n{proc.stderr}")
    return float(m.group(2)), int(m.group(1))


def hf_load_seconds(path: Path) -> float:
    from transformers import AutoModelForCausalLM

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda")
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return seconds


def load_times(binary, path: Path, work: Path, repeats: int) -> dict:
    raw, xd = [], []
    for _ in range(repeats):  # interleaved, so both see the same page-cache state
        raw.append(raw_read_seconds(path))
        xd.append(xd_load_seconds(binary, path, work))
    raw_s, raw_bytes = min(raw)
    xd_s, xd_bytes = min(xd)
    out = {
        "raw_read_s": raw_s, "raw_bytes": raw_bytes, "raw_GBps": raw_bytes / raw_s / 1e9,
        "xd_load_s": xd_s, "xd_bytes": xd_bytes, "xd_GBps": xd_bytes / xd_s / 1e9,
        "hf_load_s": hf_load_seconds(path),
    }
    out["xd_vs_raw"] = out["xd_GBps"] / out["raw_GBps"]
    out["pass"] = out["xd_vs_raw"] >= 0.8
    return out


# ------------------------------------------------------------------ (d) throughput
def xd_forward_ms(binary, path: Path, work: Path, tokens: int, repeats: int) -> list[float]:
    lines = hf_fixtures.random_token_lines(128256, [tokens] * (repeats + 1), seed=9)
    file = hf_fixtures.write_token_file(work / "long.txt", lines)
    proc = run(binary, "logits", "--model", path, "--tokens", file, "--out", work / "long.safetensors",
               "--dtype", "bf16", "--device", "cuda", "--time")
    times = [float(x) for x in re.findall(r"forward: \d+ tokens in ([0-9.e+-]+) ms", proc.stderr + proc.stdout)]
    (work / "long.safetensors").unlink(missing_ok=True)
    return times[1:]  # the first is the warm-up


def hf_forward_ms(path: Path, tokens: int, repeats: int) -> list[float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda",
                                                 attn_implementation="sdpa").eval()
    lines = hf_fixtures.random_token_lines(128256, [tokens] * (repeats + 1), seed=9)
    times = []
    with torch.no_grad():
        for line in lines:
            ids = torch.tensor([line], device="cuda")
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            logits = model(ids, use_cache=False).logits
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
            del logits
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return times[1:]


def throughput(binary, path: Path, work: Path, tokens: int, repeats: int) -> dict:
    xd = xd_forward_ms(binary, path, work, tokens, repeats)
    hf = hf_forward_ms(path, tokens, repeats)
    out = {"tokens": tokens, "xd_ms": xd, "hf_ms": hf,
           "xd_median_ms": statistics.median(xd), "hf_median_ms": statistics.median(hf)}
    out["xd_tokens_per_s"] = tokens / out["xd_median_ms"] * 1e3
    out["hf_tokens_per_s"] = tokens / out["hf_median_ms"] * 1e3
    out["speedup"] = out["hf_median_ms"] / out["xd_median_ms"]
    out["pass"] = out["speedup"] >= 1.0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--work", default="/tmp/xd_bench_teacher", help="scratch directory (checkpoints)")
    ap.add_argument("--bin", default=os.environ.get("XDISTILL_BIN", str(ROOT / "build" / "xdistill")))
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fresh", action="store_true", help="remake the 8B checkpoint")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: parity,load,throughput")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_teacher: needs a CUDA device", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDISTILL_BIN"] = args.bin
    skip = set(filter(None, args.skip.split(",")))
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    import transformers
    results["transformers"] = transformers.__version__

    if "parity" not in skip:
        results["parity"] = bf16_parity(args.bin, work)
    if not ({"load", "throughput"} <= skip):
        path = make_llama8b(work, args.fresh)
        results["checkpoint"] = {"path": str(path), "shards": len(list(path.glob("model-*.safetensors")))}
        if "load" not in skip:
            results["load"] = load_times(args.bin, path, work, args.repeats)
        if "throughput" not in skip:
            results["throughput"] = throughput(args.bin, path, work, args.tokens, args.repeats)

    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    print(f"\nteacher benchmark on {r['device']} (torch {r['torch']}, transformers {r['transformers']})")
    if "parity" in r:
        print(f"{'family':<12}{'xd f32 err':>12}{'xd bf16 err':>13}{'HF bf16 err':>13}  ok")
        for k, v in r["parity"].items():
            print(f"{k:<12}{v['xd_f32_err']:>12.2e}{v['xd_bf16_err']:>13.2e}{v['hf_bf16_err']:>13.2e}  "
                  f"{'yes' if v['pass'] else 'NO'}")
    if "load" in r:
        l = r["load"]
        print(f"load 8B bf16: xdistill {l['xd_load_s']:.2f} s ({l['xd_GBps']:.2f} GB/s), raw read "
              f"{l['raw_read_s']:.2f} s ({l['raw_GBps']:.2f} GB/s) -> {100 * l['xd_vs_raw']:.0f} % of raw "
              f"(target 80 %); transformers {l['hf_load_s']:.2f} s")
    if "throughput" in r:
        t = r["throughput"]
        print(f"forward {t['tokens']} tokens bf16: xdistill {t['xd_median_ms']:.1f} ms "
              f"({t['xd_tokens_per_s']:.0f} tok/s), transformers {t['hf_median_ms']:.1f} ms "
              f"({t['hf_tokens_per_s']:.0f} tok/s) -> {t['speedup']:.2f}x (target 1.0x)")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark `xdistill merge` on K random experts of a 1B-class checkpoint.

Creates K random bf16 checkpoints with the shapes of Llama-3.2-1B (tied embeddings,
16 layers, ~1.24B parameters, 2.47 GB each, sharded at 1 GB with an index) using
numpy and the `safetensors` package, then measures:
  - reading every input file raw (sequential read(2) into one buffer), MB/s;
  - `xdistill merge` (linear, uniform, bf16) under /usr/bin/time -v: wall time,
    input MB/s, and peak resident memory against the largest single tensor.
Prints a "## Merge" section for BENCHMARKS.md (--append writes it there).

  .venv/bin/python3 tools/bench_merge.py --xdistill build/xdistill --experts 4 [--append]
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
from safetensors.torch import save_file

HIDDEN, INTER, LAYERS, VOCAB, KV = 2048, 8192, 16, 128256, 512


def shapes():
    out = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out.update({p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "self_attn.k_proj.weight": (KV, HIDDEN),
                    p + "self_attn.v_proj.weight": (KV, HIDDEN), p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                    p + "mlp.gate_proj.weight": (INTER, HIDDEN), p + "mlp.up_proj.weight": (INTER, HIDDEN),
                    p + "mlp.down_proj.weight": (HIDDEN, INTER), p + "input_layernorm.weight": (HIDDEN,),
                    p + "post_attention_layernorm.weight": (HIDDEN,)})
    return out


def random_bf16(rng, shape):
    # Random sign and mantissa, exponent fixed so |x| is in [2^-7, 2^-6): cheap to make
    # (random bytes and two bit operations) and never NaN, inf or subnormal.
    n = int(np.prod(shape))
    bits = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16) & np.uint16(0x807F) | np.uint16(0x3C00)
    return torch.from_numpy(bits.reshape(shape)).view(torch.bfloat16)


def make_expert(path, seed, shard_bytes=1 << 30):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shards, current, size = [], {}, 0
    for name, shape in shapes().items():
        t = random_bf16(rng, shape)
        if current and size + t.numel() * 2 > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += t.numel() * 2
        if len(current) == 1 and size > shard_bytes:  # a tensor larger than a shard gets its own
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, path / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in shard})
        del shard
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN,
        "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": VOCAB, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072}))
    (path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {}}}')


def read_raw(files):
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    total, start = 0, time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as h:
            while True:
                n = h.readinto(view)
                if not n:
                    break
                total += n
    return total, time.perf_counter() - start


ANCHOR = r"""
import sys, torch
from safetensors import safe_open
from safetensors.torch import save_file
import json, pathlib
experts, out = sys.argv[1:-1], pathlib.Path(sys.argv[-1])
def handles(d):
    index = json.loads((pathlib.Path(d) / "model.safetensors.index.json").read_text())["weight_map"]
    files = {f: safe_open(str(pathlib.Path(d) / f), "pt") for f in set(index.values())}
    return {n: files[f] for n, f in index.items()}
hs = [handles(d) for d in experts]
merged = {}
for name in hs[0]:
    acc = None
    for h in hs:
        t = h[name].get_tensor(name).float()
        acc = t / len(hs) if acc is None else acc.add_(t, alpha=1.0 / len(hs))
    merged[name] = acc.to(torch.bfloat16)
out.mkdir(parents=True, exist_ok=True)
save_file(merged, str(out / "model.safetensors"), metadata={"format": "pt"})
"""


def timed(cmd, env=None):
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{r.stderr[-4000:]}")
    return parse_time_v(r.stderr)


def parse_time_v(text):
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    return rss_kb * 1024, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xdistill", default="build/xdistill")
    ap.add_argument("--dir", default="/tmp/xd_bench_merge")
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the random checkpoints for another run")
    ap.add_argument("--no-anchor", action="store_true", help="skip the Python safetensors+torch anchor")
    ap.add_argument("--append", action="store_true", help="append the section to BENCHMARKS.md")
    args = ap.parse_args()

    root = pathlib.Path(args.dir)
    experts = [root / f"expert{i}" for i in range(args.experts)]
    for i, e in enumerate(experts):
        if not (e / "model.safetensors.index.json").exists():
            t = time.perf_counter()
            make_expert(e, seed=i)
            print(f"created {e} in {time.perf_counter() - t:.1f} s", flush=True)
    files = sorted(str(f) for e in experts for f in e.glob("*.safetensors"))
    largest = max(int(np.prod(s)) for s in shapes().values()) * 2
    params = sum(int(np.prod(s)) for s in shapes().values())

    total, raw_s = read_raw(files)
    out = root / "merged"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [args.xdistill, "merge", "--experts", *map(str, experts), "--dtype", "bf16", "--out", str(out),
           "--threads", str(args.threads)]
    load_before = os.getloadavg()[0]
    base_rss, _ = timed([args.xdistill, "merge", "--help"])  # the binary's own constant (libtorch, CUDA libraries)
    rss, merge_s = timed(cmd, env=dict(os.environ, XDISTILL_PLAIN_PROGRESS="1"))
    anchor_rss = anchor_s = None
    if not args.no_anchor:  # what a user would write: safe_open, torch f32 sums, save_file
        anchor_out = root / "anchor"
        anchor_rss, anchor_s = timed([sys.executable, "-c", ANCHOR, *map(str, experts), str(anchor_out)])
        shutil.rmtree(anchor_out, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)

    mb = 1e6
    section = f"""
## Merge

`xdistill merge` (linear, uniform weights, bf16 in and out, f32 accumulation), {args.experts} experts of a random
1B-class checkpoint (Llama-3.2-1B shapes: {params / 1e9:.2f} B parameters, {total / args.experts / 1e9:.2f} GB per
expert in bf16, 1 GB shards). Machine: {platform.node()}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}),
{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; date {datetime.date.today().isoformat()}.
Command: `.venv/bin/python3 tools/bench_merge.py --xdistill {args.xdistill} --experts {args.experts}`
(merge measured with `/usr/bin/time -v`; inputs in the page cache as left by their creation and the raw read).

| measure | value |
|---|---|
| inputs read | {total / mb:.0f} MB in {len(files)} files |
| raw sequential read of the inputs (`read(2)`, 64 MB buffer) | {total / raw_s / mb:.0f} MB/s ({raw_s:.1f} s) |
| merge wall time | {merge_s:.1f} s |
| merge throughput (input bytes / wall time) | {total / merge_s / mb:.0f} MB/s ({total / merge_s / (total / raw_s):.2f} x raw read) |
| peak resident memory of the merge | {rss / 2**20:.0f} MiB |
| largest single tensor (embed_tokens, bf16) | {largest / 2**20:.0f} MiB |
| peak RSS / largest tensor | {rss / largest:.2f} (target <= 2 + a constant) |
| constant: peak RSS of `xdistill merge --help` (libtorch and CUDA libraries mapped) | {base_rss / 2**20:.0f} MiB |
| merge's peak above that constant / largest tensor | {(rss - base_rss) / largest:.2f} |
| machine load average (1 min) when the merge started | {load_before:.1f} on {os.cpu_count()} cores (shared machine) |
"""
    if anchor_s is not None:
        section += f"""| anchor: Python `safe_open` + torch f32 sums + `save_file`, wall time | {anchor_s:.1f} s ({total / anchor_s / mb:.0f} MB/s) |
| anchor: peak resident memory | {anchor_rss / 2**20:.0f} MiB |
"""
    print(section)
    if args.append:
        with open(pathlib.Path(__file__).resolve().parents[1] / "BENCHMARKS.md", "a") as f:
            f.write(section)


if __name__ == "__main__":
    main()

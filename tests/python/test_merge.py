"""`xdistill merge` against merges computed independently here, in numpy float64
from the Python `safetensors` package: every method, f32 and bf16 inputs, weights
that need normalising, a mergekit-style recipe, the errors, and (once the teacher's
`xdistill logits` exists) the logits of a merged tiny Llama against transformers."""
import json
import math
import os
import pathlib
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

XD = os.environ.get("XDISTILL_BIN", "build/xdistill")
SRC = pathlib.Path(os.environ.get("XD_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
M64 = (1 << 64) - 1


def xdistill(*args, check=True):
    r = subprocess.run([XD, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


# ---------------------------------------------------------------- fixtures

SHAPES = {"model.embed_tokens.weight": (37, 16), "model.layers.0.mlp.up_proj.weight": (24, 16),
          "model.norm.weight": (16,)}


def write_ckpt(path, tensors, config=None):
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config or {"model_type": "llama", "hidden_size": 16,
                                                              "_name_or_path": str(path)}))
    (path / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0, "b": 1}}}')


@pytest.fixture(params=[torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def experts(request, tmp_path):
    """A base θ0 and three experts θ_i = θ0 + noise, with some exact zeros in τ."""
    dtype = request.param
    g = torch.Generator().manual_seed(11)
    base = {n: torch.randn(s, generator=g).to(dtype) for n, s in SHAPES.items()}
    write_ckpt(tmp_path / "base", base)
    dirs = []
    for i in range(3):
        t = {}
        for n, b in base.items():
            delta = torch.randn(b.shape, generator=g) * 0.1
            delta[torch.rand(b.shape, generator=g) < 0.1] = 0
            t[n] = (b.float() + delta).to(dtype)
        write_ckpt(tmp_path / f"e{i}", t)
        dirs.append(tmp_path / f"e{i}")
    return tmp_path, dirs, tmp_path / "base", dtype


def load_np(d):
    return {n: t.float().numpy() for n, t in load_file(pathlib.Path(d) / "model.safetensors").items()}


def read_merged(out):
    index = out / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(load_file(out / f))
    return tensors


# ---------------------------------------------------------------- independent references

def splitmix64(z):
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(M64)
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(M64)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(M64)
    return z ^ (z >> np.uint64(31))


def fnv1a(name):
    h = 0xCBF29CE484222325
    for c in name.encode():
        h = ((h ^ c) * 0x100000001B3) & M64
    return h


def dare_mask(seed, name, expert, n, density):
    one = lambda v: splitmix64(np.array([v], dtype=np.uint64))[0]
    stream = one(np.uint64(seed) ^ one(np.uint64(fnv1a(name)) ^ one(np.uint64(expert))))
    u = splitmix64(np.arange(n, dtype=np.uint64) ^ stream) >> np.uint64(40)
    return u < np.uint64(math.floor(density * 16777216.0))


def reference(method, xs, base, weights, density=None, seed=0):
    """The documented definitions (include/xdistill/merge/methods.h), in float64."""
    lam = np.asarray(weights, dtype=np.float64)
    out = {}
    for name in xs[0]:
        x = [e[name].astype(np.float32) for e in xs]
        if method == "linear":
            out[name] = sum(l * xi.astype(np.float64) for l, xi in zip(lam, x))
            continue
        b = base[name].astype(np.float32)
        tau = [xi - b for xi in x]  # in f32, like the merge
        if method == "task_arithmetic":
            out[name] = b + sum(l * t.astype(np.float64) for l, t in zip(lam, tau))
        elif method == "dare":
            out[name] = b + sum(l * t.astype(np.float64) * dare_mask(seed, name, i, t.size, density).reshape(t.shape)
                                / density for i, (l, t) in enumerate(zip(lam, tau)))
        elif method == "ties":
            trimmed = []
            for t in tau:
                k = int(math.floor(density * t.size + 0.5))
                thr = np.sort(np.abs(t).ravel())[::-1][k - 1] if k >= 1 else np.inf
                trimmed.append(np.where(np.abs(t) >= thr, t, 0).astype(np.float64))
            elected = sum(l * t for l, t in zip(lam, trimmed))
            agree = [(t != 0) & (np.sign(t) == np.sign(elected)) & (elected != 0) for t in trimmed]
            num = sum(l * t * a for l, t, a in zip(lam, trimmed, agree))
            den = sum(l * a for l, a in zip(lam, agree))
            mean = np.where(den > 0, num / np.where(den > 0, den, 1), 0)
            out[name] = b + lam.sum() * mean
    return out


def assert_close(got, want, dtype):
    for name, w in want.items():
        g = got[name].float().numpy()
        assert g.shape == w.shape, name
        if dtype == torch.bfloat16:  # one rounding to bf16 at the end: within one bf16 ulp
            np.testing.assert_allclose(g, w, rtol=2 ** -8, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6, err_msg=name)


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("method,extra", [
    ("linear", []),
    ("task_arithmetic", []),
    ("ties", ["--density", "0.4"]),
    ("dare", ["--density", "0.6", "--seed", "5"]),
])
def test_every_method_matches_an_independent_merge(experts, method, extra):
    root, dirs, base, dtype = experts
    out = root / f"out_{method}"
    weights = [2.0, 1.0, 1.0]  # sum 4: normalised to .5 .25 .25, with a warning
    r = xdistill("merge", "--experts", *dirs, "--weights", *weights, "--method", method,
                 *([] if method == "linear" else ["--base", base]), *extra, "--out", out)
    assert "normalising" in r.stderr, r.stderr
    density = float(extra[1]) if extra else None
    seed = int(extra[3]) if method == "dare" else 0
    want = reference(method, [load_np(d) for d in dirs], load_np(base), [0.5, 0.25, 0.25], density, seed)
    got = read_merged(out)
    assert all(got[n].dtype == dtype for n in got)
    assert_close(got, want, dtype)
    manifest = json.loads((out / "merge_manifest.json").read_text())
    assert manifest["method"] == method
    assert [i["weight"] for i in manifest["inputs"] if i["role"] == "expert"] == [0.5, 0.25, 0.25]
    assert [i["weight_given"] for i in manifest["inputs"] if i["role"] == "expert"] == weights


def test_mergekit_recipe_and_sharded_bf16_output(experts, tmp_path):
    root, dirs, base, dtype = experts
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""merge_method: ties
base_model: {base}
models:
  - model: {dirs[0]}
    parameters: {{weight: 0.5, density: 0.3}}
  - model: {dirs[1]}
    parameters: {{weight: 0.3}}
  - model: {dirs[2]}
    parameters: {{weight: 0.2}}
parameters:
  density: 0.7
dtype: bfloat16
""")
    out = root / "recipe_out"
    xdistill("merge", "--config", recipe, "--out", out, "--max-shard-size", 1500)
    assert (out / "model.safetensors.index.json").exists()
    got = read_merged(out)
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    xs = [load_np(d) for d in dirs]
    want = {}
    # Per-expert densities: expert 1 uses 0.3, the others the recipe's 0.7.
    for name in xs[0]:
        b = load_np(base)[name].astype(np.float32)
        lam, dens = [0.5, 0.3, 0.2], [0.3, 0.7, 0.7]
        trimmed = []
        for x, d in zip(xs, dens):
            t = x[name].astype(np.float32) - b
            k = int(math.floor(d * t.size + 0.5))
            thr = np.sort(np.abs(t).ravel())[::-1][k - 1]
            trimmed.append(np.where(np.abs(t) >= thr, t, 0).astype(np.float64))
        elected = sum(l * t for l, t in zip(lam, trimmed))
        agree = [(t != 0) & (np.sign(t) == np.sign(elected)) & (elected != 0) for t in trimmed]
        num = sum(l * t * a for l, t, a in zip(lam, trimmed, agree))
        den = sum(l * a for l, a in zip(lam, agree))
        want[name] = b + np.where(den > 0, num / np.where(den > 0, den, 1), 0)
    assert_close(got, want, torch.bfloat16)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_errors_exit_cleanly_and_write_nothing(experts):
    root, dirs, base, _ = experts
    out = root / "never"
    r = xdistill("merge", "--experts", *dirs, "--weights", 0.5, -0.1, 0.6, "--out", out, check=False)
    assert r.returncode == 2 and "negative" in r.stderr, r.stderr
    r = xdistill("merge", "--experts", *dirs, "--method", "ties", "--out", out, check=False)
    assert r.returncode == 2 and "--base" in r.stderr, r.stderr
    cfg = json.loads((dirs[2] / "config.json").read_text())
    cfg["hidden_size"] = 32
    (dirs[2] / "config.json").write_text(json.dumps(cfg))
    r = xdistill("merge", "--experts", *dirs, "--out", out, check=False)
    assert r.returncode == 1 and "config.json field 'hidden_size'" in r.stderr, r.stderr
    assert not out.exists()
    assert not [p for p in root.iterdir() if ".tmp." in p.name]


# ---------------------------------------------------------------- a merged student runs

def test_merged_tiny_llama_logits_match_an_independent_merge(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=False)
    torch.manual_seed(0)
    seed_model = transformers.LlamaForCausalLM(config).eval()
    dirs = []
    for i in range(3):
        expert = transformers.LlamaForCausalLM(config).eval()
        with torch.no_grad():
            for (name, p), (_, p0) in zip(expert.named_parameters(), seed_model.named_parameters()):
                p.copy_(p0 + 0.02 * torch.randn_like(p0))
        expert.save_pretrained(tmp_path / f"expert{i}", safe_serialization=True)
        dirs.append(tmp_path / f"expert{i}")
    out = tmp_path / "student"
    weights = [0.5, 0.3, 0.2]
    xdistill("merge", "--experts", *dirs, "--weights", *weights, "--out", out, "--dtype", "f32")

    # The same merge, independently: safetensors + float64.
    states = [load_file(d / "model.safetensors") for d in dirs]
    merged = {n: sum(w * s[n].double() for w, s in zip(weights, states)).float() for n in states[0]}
    got = read_merged(out)
    for n, t in merged.items():
        torch.testing.assert_close(got[n], t, rtol=1e-6, atol=1e-7)

    info = xdistill("info", "--model", out, check=False)
    logits_out = tmp_path / "logits.safetensors"
    tokens = tmp_path / "tokens.txt"
    rows = [[1, 5, 9, 13, 2, 77], [3, 4]]
    tokens.write_text("\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    run = xdistill("logits", "--model", out, "--tokens", tokens, "--out", logits_out, "--dtype", "f32",
                   "--device", "cpu", check=False)
    if "not built yet" in run.stdout + run.stderr + info.stdout + info.stderr:
        pytest.skip("`xdistill info/logits` are still placeholders (\"not built yet\")")
    assert info.returncode == 0, info.stderr
    assert run.returncode == 0, run.stderr
    reference = transformers.LlamaForCausalLM(config).eval()
    reference.load_state_dict(merged, strict=True)
    ours = load_file(logits_out)
    for i, row in enumerate(rows):
        with torch.no_grad():
            want = reference(torch.tensor([row])).logits[0].float()
        torch.testing.assert_close(ours[f"logits.{i}"], want, rtol=1e-4, atol=1e-4)

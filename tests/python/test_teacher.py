"""Teacher parity against Hugging Face transformers, on the CPU (CI).

Every family (tests/python/hf_fixtures.py VARIANTS) as a tiny random checkpoint:
`xdistill logits` must match transformers' fp32 logits to a relative L2 error of
1e-5, and `xdistill generate` must reproduce transformers' greedy generation token
for token for 32 tokens.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_fixtures import (VARIANTS, load_hf, make_checkpoint, random_token_lines, rel_l2, run_xdistill,
                         write_token_file)

LENGTHS = [1, 7, 23, 40]  # 40 > the OLMo-3 variant's window of 8
TOL = 1e-5


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {name: make_checkpoint(name, root / name, seed=i) for i, name in enumerate(VARIANTS)}


@pytest.fixture(scope="module")
def hf_models(checkpoints):
    """transformers' fp32 model per variant, loaded once (loading dominates on small CI machines)."""
    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = load_hf(checkpoints[variant])
        return cache[variant]
    return get


def vocab_of(path: Path) -> int:
    return json.loads((path / "config.json").read_text())["vocab_size"]


def xd_logits(model_dir, lines, tmp_path, dtype="f32", extra=()):
    tokens = write_token_file(tmp_path / "tokens.txt", lines)
    out = tmp_path / "logits.safetensors"
    run_xdistill("logits", "--model", model_dir, "--tokens", tokens, "--out", out, "--dtype", dtype,
                 "--device", "cpu", *extra)
    tensors = load_file(str(out))
    assert sorted(tensors) == sorted(f"logits.{i}" for i in range(len(lines)))
    return [tensors[f"logits.{i}"] for i in range(len(lines))]


@torch.no_grad()
def hf_logits(model, lines):
    return [model(torch.tensor([line])).logits[0].float() for line in lines]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers_fp32(variant, checkpoints, hf_models, tmp_path):
    path = checkpoints[variant]
    lines = random_token_lines(vocab_of(path), LENGTHS, seed=1)
    ours = xd_logits(path, lines, tmp_path)
    ref = hf_logits(hf_models(variant), lines)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.dtype == torch.float32 and a.shape == b.shape, (a.shape, b.shape)
        err = rel_l2(a, b)
        assert err <= TOL, f"{variant} line {i} (T={len(lines[i])}): relative L2 error {err:.3g} > {TOL}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_generation_matches_transformers(variant, checkpoints, hf_models, tmp_path):
    path = checkpoints[variant]
    # Two prompts of one length: one batch for us and for transformers' generate.
    lines = random_token_lines(vocab_of(path), [7, 7], seed=2)
    tokens = write_token_file(tmp_path / "prompts.txt", lines)
    out = run_xdistill("generate", "--model", path, "--tokens", tokens, "--max-new", 32, "--device", "cpu").stdout
    ours = [list(map(int, row.split())) for row in out.strip().splitlines()]
    with torch.no_grad():
        ref = hf_models(variant).generate(torch.tensor(lines), max_new_tokens=32, do_sample=False)
    for i, line in enumerate(lines):
        assert ours[i] == ref[i, len(line):].tolist(), f"{variant} prompt {i}:\n ours {ours[i]}\n   hf {ref[i]}"


def legacy_config(path: Path, rope_theta: float, rope_scaling: dict | None) -> None:
    """Rewrites config.json in the pre-5.x layout: rope_theta + rope_scaling at the top."""
    cfg = json.loads((path / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    cfg["rope_theta"] = rope_theta
    cfg["rope_scaling"] = rope_scaling
    (path / "config.json").write_text(json.dumps(cfg, indent=2))


@pytest.mark.parametrize("variant,theta,scaling", [
    ("llama3", 250000.0, dict(rope_type="llama3", factor=4.0, low_freq_factor=1.0, high_freq_factor=2.0,
                              original_max_position_embeddings=32)),
    ("qwen2", 10000.0, dict(type="linear", factor=3.0)),
    # OLMo-3's legacy scaling applies to its full-attention layers only, and HF gives
    # the sliding layers the class default theta (500000), not this rope_theta.
    ("olmo3", 10000.0, dict(rope_type="yarn", factor=2.0, original_max_position_embeddings=256,
                            beta_fast=16, attention_factor=1.1)),
])
def test_legacy_rope_config(variant, theta, scaling, tmp_path):
    path = make_checkpoint(variant, tmp_path / variant, seed=7)
    legacy_config(path, theta, scaling)
    lines = random_token_lines(vocab_of(path), [33], seed=3)
    ours = xd_logits(path, lines, tmp_path)
    ref = hf_logits(load_hf(path), lines)
    assert rel_l2(ours[0], ref[0]) <= TOL


def test_sharded_checkpoint(tmp_path):
    path = make_checkpoint("llama3", tmp_path / "sharded", max_shard_size="100KB")
    assert (path / "model.safetensors.index.json").exists()
    lines = random_token_lines(vocab_of(path), [17], seed=4)
    assert rel_l2(xd_logits(path, lines, tmp_path)[0], hf_logits(load_hf(path), lines)[0]) <= TOL


def test_bf16_close_to_fp32_like_transformers(checkpoints, hf_models, tmp_path):
    """bf16 on the CPU: our error against the fp32 reference stays within 2x (plus a
    floor) of transformers' own bf16 error."""
    for variant in ("llama3", "qwen3", "olmo3"):
        path = checkpoints[variant]
        lines = random_token_lines(vocab_of(path), [24], seed=5)
        ref32 = hf_logits(hf_models(variant), lines)[0]
        ref16 = hf_logits(load_hf(path, dtype=torch.bfloat16), lines)[0]
        ours16 = xd_logits(path, lines, tmp_path, dtype="bf16")[0]
        hf_err, our_err = rel_l2(ref16, ref32), rel_l2(ours16, ref32)
        assert our_err <= 2 * hf_err + 1e-3, f"{variant}: ours {our_err:.3g} vs transformers {hf_err:.3g}"


def test_stop_tokens_end_a_row(checkpoints, tmp_path):
    path = checkpoints["qwen2"]
    lines = random_token_lines(vocab_of(path), [9], seed=6)
    tokens = write_token_file(tmp_path / "p.txt", lines)
    full = run_xdistill("generate", "--model", path, "--tokens", tokens, "--max-new", 20, "--device", "cpu").stdout
    full = list(map(int, full.split()))
    stop = full[4]
    cut = full.index(stop) + 1
    out = run_xdistill("generate", "--model", path, "--tokens", tokens, "--max-new", 20, "--device", "cpu",
                       "--stop", stop).stdout
    assert list(map(int, out.split())) == full[:cut]


def test_sampling_is_seeded_and_top_p_narrows_to_greedy(checkpoints, tmp_path):
    path = checkpoints["llama3"]
    lines = random_token_lines(vocab_of(path), [5, 5, 8], seed=8)
    tokens = write_token_file(tmp_path / "p.txt", lines)
    common = ("generate", "--model", path, "--tokens", tokens, "--max-new", 16, "--device", "cpu")
    greedy = run_xdistill(*common).stdout
    nucleus_of_one = run_xdistill(*common, "--temperature", 1.0, "--top-p", 1e-6, "--seed", 3).stdout
    assert nucleus_of_one == greedy
    a = run_xdistill(*common, "--temperature", 1.5, "--seed", 11).stdout
    b = run_xdistill(*common, "--temperature", 1.5, "--seed", 11).stdout
    c = run_xdistill(*common, "--temperature", 1.5, "--seed", 12).stdout
    assert a == b
    assert a != c and a != greedy  # 48 draws at temperature 1.5: identical outputs would mean no sampling


def test_info_reports_the_model(checkpoints, hf_models):
    for variant in ("llama_tied", "olmo3"):
        path = checkpoints[variant]
        out = run_xdistill("info", "--model", path).stdout
        model = hf_models(variant)
        cfg = model.config
        params = sum(p.numel() for p in model.parameters())  # tied weights once
        assert VARIANTS[variant][0] in out
        assert f"{params:,}" in out, out
        assert re.search(rf"layers\s+{cfg.num_hidden_layers}\b", out), out
        assert re.search(rf"heads\s+{cfg.num_attention_heads} \(KV heads {cfg.num_key_value_heads}", out), out
        assert "float32" in out and re.search(r"memory\s+[0-9.]+ (MiB|GiB) to load", out), out


def test_unsupported_model_type_lists_supported(checkpoints, tmp_path):
    path = tmp_path / "gpt2ish"
    path.mkdir()
    cfg = json.loads((checkpoints["llama3"] / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (path / "config.json").write_text(json.dumps(cfg))
    proc = run_xdistill("info", "--model", path, check=False)
    assert proc.returncode == 1
    for family in ("llama", "qwen2", "qwen3", "olmo2", "olmo3"):
        assert family in proc.stderr, proc.stderr


def test_every_bad_tensor_reported_at_once(checkpoints, tmp_path):
    src = checkpoints["qwen3"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    del tensors["model.layers.0.self_attn.k_proj.weight"]
    del tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["model.layers.1.self_attn.q_norm.weight"] = torch.ones(5)
    tensors["model.extra.weight"] = torch.ones(2)
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    tokens = write_token_file(tmp_path / "t.txt", [[1, 2, 3]])
    proc = run_xdistill("logits", "--model", bad, "--tokens", tokens, "--out", tmp_path / "o.safetensors",
                        "--device", "cpu", check=False)
    assert proc.returncode == 1
    for name in ("model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.up_proj.weight",
                 "model.layers.1.self_attn.q_norm.weight", "model.extra.weight"):
        assert name in proc.stderr, proc.stderr


def test_token_errors_name_the_line(checkpoints, tmp_path):
    path = checkpoints["llama3"]
    bad = tmp_path / "t.txt"
    bad.write_text("1 2 3\n4 99999 5\n")
    proc = run_xdistill("logits", "--model", path, "--tokens", bad, "--out", tmp_path / "o.safetensors",
                        "--device", "cpu", check=False)
    assert proc.returncode == 1 and ":2:" in proc.stderr and "99999" in proc.stderr, proc.stderr
    bad.write_text("1 x 3\n")
    proc = run_xdistill("generate", "--model", path, "--tokens", bad, check=False)
    assert proc.returncode == 1 and ":1:" in proc.stderr, proc.stderr

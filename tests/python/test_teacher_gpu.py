"""Teacher parity on the GPU (ctest label `gpu`; skipped without CUDA).

bf16: our error against transformers' fp32 logits must stay within twice transformers'
own bf16 error (plus a small floor); fp32 on the GPU must stay within 1e-4; greedy
generation in fp32 must match transformers token for token.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from hf_fixtures import VARIANTS, load_hf, make_checkpoint, random_token_lines, rel_l2, run_xdistill, \
    write_token_file

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers_gpu")
    return {name: make_checkpoint(name, root / name, seed=i) for i, name in enumerate(VARIANTS)}


def xd_logits(path, lines, tmp_path, dtype):
    tokens = write_token_file(tmp_path / "tokens.txt", lines)
    out = tmp_path / f"logits_{dtype}.safetensors"
    run_xdistill("logits", "--model", path, "--tokens", tokens, "--out", out, "--dtype", dtype, "--device", "cuda")
    t = load_file(str(out))
    return [t[f"logits.{i}"] for i in range(len(lines))]


@torch.no_grad()
def hf_logits(path, lines, dtype):
    model = load_hf(path, dtype=dtype, device="cuda")
    return [model(torch.tensor([line], device="cuda")).logits[0].float().cpu() for line in lines]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bf16_and_fp32_parity_on_gpu(variant, checkpoints, tmp_path):
    path = checkpoints[variant]
    vocab = VARIANTS[variant][1]["vocab_size"]
    lines = random_token_lines(vocab, [1, 29, 64], seed=1)
    ref32 = hf_logits(path, lines, torch.float32)
    ref16 = hf_logits(path, lines, torch.bfloat16)
    ours32 = xd_logits(path, lines, tmp_path, "f32")
    ours16 = xd_logits(path, lines, tmp_path, "bf16")
    for i in range(len(lines)):
        assert rel_l2(ours32[i], ref32[i]) <= 1e-4, f"{variant} line {i} fp32"
        hf_err, our_err = rel_l2(ref16[i], ref32[i]), rel_l2(ours16[i], ref32[i])
        assert our_err <= 2 * hf_err + 1e-3, f"{variant} line {i}: bf16 error {our_err:.3g} vs HF {hf_err:.3g}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_generation_on_gpu(variant, checkpoints, tmp_path):
    path = checkpoints[variant]
    lines = random_token_lines(VARIANTS[variant][1]["vocab_size"], [7, 7], seed=2)
    tokens = write_token_file(tmp_path / "prompts.txt", lines)
    out = run_xdistill("generate", "--model", path, "--tokens", tokens, "--max-new", 32, "--device", "cuda").stdout
    ours = [list(map(int, row.split())) for row in out.strip().splitlines()]
    model = load_hf(path, device="cuda")
    with torch.no_grad():
        ref = model.generate(torch.tensor(lines, device="cuda"), max_new_tokens=32, do_sample=False)
    for i, line in enumerate(lines):
        assert ours[i] == ref[i, len(line):].tolist(), f"{variant} prompt {i}"

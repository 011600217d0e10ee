"""Tiny random Hugging Face checkpoints for every teacher family, for tests.

Other test files import this module (it sits next to them in tests/python/):

    from hf_fixtures import VARIANTS, make_checkpoint, load_hf, run_xdistill

    path = make_checkpoint("qwen3", tmp_path / "qwen3")     # writes config.json + model.safetensors
    model = load_hf(path)                                    # the transformers reference, eval mode, fp32

Each variant is a small configuration (hidden 64, 2-3 layers, 4 query heads and 2 KV
heads, vocabulary 256-320) chosen to exercise one feature of a family: GQA, tied or
untied embeddings, RoPE scaling (llama3, linear, yarn), Qwen2's q/k/v biases, Qwen3's
per-head q/k norms, OLMo's full-projection q/k norms and post-norms, and OLMo-3's
sliding-window layers (window 8, so that short test sequences already slide).

Weights are random but not the library's default initialisation: every norm weight is
1 + noise and every bias is non-zero, so that a mistake in any of them changes the
logits. The scale of the projections is raised so that the logits are peaked enough
for greedy decoding to be well defined (no near ties).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch

COMMON = dict(
    hidden_size=64,
    intermediate_size=160,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)

# name -> (model_type, extra config fields). Every variant has GQA (4 query / 2 KV heads).
VARIANTS: dict[str, tuple[str, dict]] = {
    # Llama 3.1-style RoPE scaling, untied embeddings, 3 layers.
    "llama3": ("llama", dict(num_hidden_layers=3, vocab_size=256, rope_theta=500000.0,
                             rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0, original_max_position_embeddings=64),
                             tie_word_embeddings=False, rms_norm_eps=1e-5)),
    # Llama with tied embeddings, linear RoPE scaling, attention and MLP biases, head_dim != hidden/heads.
    "llama_tied": ("llama", dict(num_hidden_layers=2, vocab_size=300, rope_theta=10000.0, head_dim=32,
                                 rope_scaling=dict(rope_type="linear", factor=2.0),
                                 tie_word_embeddings=True, attention_bias=True, mlp_bias=True)),
    # Qwen2: q/k/v biases (no o bias), untied.
    "qwen2": ("qwen2", dict(num_hidden_layers=2, vocab_size=320, rope_theta=1000000.0, tie_word_embeddings=False)),
    # Qwen3: per-head q/k RMSNorm, tied embeddings, explicit head_dim.
    "qwen3": ("qwen3", dict(num_hidden_layers=2, vocab_size=256, head_dim=16, rope_theta=1000000.0,
                            tie_word_embeddings=True)),
    # OLMo-2: post-norms, RMSNorm over the full q and k projections.
    "olmo2": ("olmo2", dict(num_hidden_layers=2, vocab_size=300, rope_theta=500000.0, tie_word_embeddings=False)),
    # OLMo-3: as OLMo-2 plus sliding-window layers (window 8) and yarn RoPE on the full layers.
    "olmo3": ("olmo3", dict(num_hidden_layers=3, vocab_size=256, sliding_window=8,
                            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                            rope_theta=500000.0,
                            rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=128),
                            tie_word_embeddings=False)),
}


def tiny_config(variant: str):
    """The transformers config object of a variant."""
    from transformers import AutoConfig

    model_type, extra = VARIANTS[variant]
    fields = dict(COMMON)
    fields.update(extra)
    return AutoConfig.for_model(model_type, **fields)


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int = 0, scale: float = 0.15) -> None:
    """Re-draws every parameter so that norms and biases matter (see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if "norm" in name:
            p.copy_(1.0 + 0.2 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        elif "embed_tokens" in name or "lm_head" in name:
            p.copy_(0.5 * noise)
        else:
            p.copy_(scale * noise)


def make_checkpoint(variant: str, out_dir, dtype: torch.dtype = torch.float32, seed: int = 0,
                    max_shard_size: str | None = None) -> Path:
    """Creates a random checkpoint of `variant` in out_dir (config.json, safetensors,
    generation_config.json) and returns out_dir as a Path."""
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(variant), dtype=torch.float32)
    randomise(model, seed)
    model = model.to(dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, **kwargs)
    return out


def load_hf(path, dtype: torch.dtype = torch.float32, device: str = "cpu", attn: str = "sdpa"):
    """The transformers reference model for a checkpoint, in eval mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    return model.to(device).eval()


def random_token_lines(vocab: int, lengths, seed: int = 0) -> list[list[int]]:
    """One list of random token ids per requested length."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def write_token_file(path, lines: list[list[int]]) -> Path:
    """The `--tokens FILE` format of `xdistill logits/generate`: one sequence per line."""
    path = Path(path)
    path.write_text("".join(" ".join(str(t) for t in line) + "\n" for line in lines))
    return path


def xdistill_bin() -> str:
    """The built binary: $XDISTILL_BIN (set by ctest), else build/xdistill."""
    env = os.environ.get("XDISTILL_BIN")
    if env:
        return env
    root = Path(os.environ.get("XD_SOURCE_DIR", Path(__file__).resolve().parents[2]))
    return str(root / "build" / "xdistill")


def run_xdistill(*args, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the binary with string arguments; on failure the assertion shows its output."""
    proc = subprocess.run([xdistill_bin(), *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"xdistill {' '.join(map(str, args))} failed ({proc.returncode}):\n" \
                                     f"{proc.stdout}\n{proc.stderr}"
    return proc


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a64, b64 = a.double(), b.double()
    return float((a64 - b64).norm() / b64.norm().clamp_min(1e-300))

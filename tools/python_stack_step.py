#!/usr/bin/env python3
"""The training steps of anchors.md in the Python stack they were measured with, to run
beside `xdistill bench-train` in the same device call (same card, same shapes):
Hugging Face `transformers` Llama, the student mixer written here in PyTorch, the mLSTM
from mlstm_kernels' Triton `limit_chunk` (carried as a wheel: scripts/device/fetch_wheels.sh)
and the window through FlexAttention (sliding window 512 + 4 sinks), bf16, random weights.

    python3 tools/python_stack_step.py --stage align   --shape llama-8b --batch 2 --seq 4096
    python3 tools/python_stack_step.py --stage distill --shape llama-3b --batch 1 --seq 4096

  align:   teacher forward (no grad) with each layer's attention input and its output
           before W_o kept; every student mixer on its layer's input; sum of the per-layer
           MSE; AdamW on the new parameters.
  distill: the student (every attention replaced by the mixer) trained whole,
           0.9 CE + 0.1 KL over a given teacher top-256 (renormalised), gradient
           checkpointing, AdamW on bf16 parameters (no float32 master copy).
Prints one line like `xdistill bench-train`: tok/s, ms/step, MFU (distill: 6 N T over
the card's dense bf16 peak, N = trained parameters, as anchors.md), peak memory. On a CPU (tests, `--shape tiny`)
the mLSTM is a PyTorch parallel form and the window an SDPA mask: same maths, no speed.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

SHAPES = {
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
    "llama-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=97, tie_word_embeddings=False, rope_theta=10000.0),
}
PEAK_BF16_FLOPS = 989e12  # H100/H200 SXM dense bf16, the MFU convention of anchors.md


def mlstm_parallel(q, k, v, i, f, eps=1e-6):
    """The mLSTM cell in its parallel, stabilised form (no initial state): q, k [B,H,S,Dk],
    v [B,H,S,Dv], i, f [B,H,S]. The CPU stand-in for the Triton kernel."""
    S = q.shape[2]
    q, k, v, i, f = (t.float() for t in (q, k, v, i, f))
    logf = torch.cumsum(F.logsigmoid(f), -1)
    logd = logf[..., :, None] - logf[..., None, :] + i[..., None, :]
    logd = logd.masked_fill(~torch.ones(S, S, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    m = logd.amax(-1, keepdim=True)
    c = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) * torch.exp(logd - m)
    n = torch.maximum(c.sum(-1, keepdim=True).abs(), torch.exp(-m))
    return (c / (n + eps)) @ v


def visible(qi, ki, window, sinks):
    """Whether query position qi sees key position ki: causal, within the window or a sink."""
    return (ki <= qi) & ((qi - ki < window) | (ki < sinks))


def window_mask(S, window, sinks, device):
    positions = torch.arange(S, device=device)
    return visible(positions[:, None], positions[None, :], window, sinks)


class Kernels:
    """The mixer's two branches: Triton mLSTM + FlexAttention on CUDA, PyTorch on a CPU."""

    def __init__(self, device, S, window=512, sinks=4):
        self.cuda = device.type == "cuda"
        if self.cuda:
            from mlstm_kernels.torch.chunkwise.triton_limit_chunk import mlstm_chunkwise__limit_chunk
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            self.mlstm_kernel = mlstm_chunkwise__limit_chunk
            rule = lambda b, h, qi, ki: visible(qi, ki, window, sinks)
            self.block_mask = create_block_mask(rule, B=None, H=None, Q_LEN=S, KV_LEN=S)
            self.flex = torch.compile(flex_attention)
        else:
            self.mask = window_mask(S, window, sinks, device)

    def mlstm(self, q, k, v, i, f):
        if self.cuda:
            return self.mlstm_kernel(q, k, v, i, f, chunk_size=64, autocast_kernel_dtype=torch.bfloat16)
        return mlstm_parallel(q, k, v, i, f).to(v.dtype)

    def window(self, q, k, v):
        if self.cuda:
            return self.flex(q, k, v, block_mask=self.block_mask, enable_gqa=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, enable_gqa=True)


class HybridAttention(nn.Module):
    """The student block of spec/method.md §2 around the teacher's (copied) projections:
    Hedgehog feature maps on RoPE'd q, k; exponential input and sigmoid forget gates from
    the layer input, soft-capped; the mLSTM over query heads and the window + sinks; one
    output gate per head from the plain [q, k, v]; W_o."""

    def __init__(self, attn, config, kernels, softcap=15.0):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
        self.H, self.Hk = config.num_attention_heads, config.num_key_value_heads
        self.D = config.hidden_size // self.H
        self.kernels, self.softcap = kernels, softcap
        dev, dt, H, D = attn.q_proj.weight.device, attn.q_proj.weight.dtype, self.H, self.D
        eye = torch.eye(D, device=dev, dtype=dt).expand(H, D, D)
        self.feature_q = nn.Parameter(eye.clone())
        self.feature_k = nn.Parameter(eye.clone())
        self.gate_w = nn.Parameter(torch.zeros(2 * H, config.hidden_size, device=dev, dtype=dt))
        p = torch.linspace(0.9, 0.999, H, dtype=torch.float64)
        self.gate_b = nn.Parameter(torch.cat([torch.full((H,), -10.0, dtype=torch.float64),
                                              torch.log(p) - torch.log1p(-p)]).to(dev, dt))
        self.ogate_w = nn.Parameter(torch.zeros(H, 3 * D, device=dev, dtype=dt))
        self.ogate_b = nn.Parameter(torch.full((H,), -3.0, device=dev, dtype=dt))

    def new_parameters(self):
        return [self.feature_q, self.feature_k, self.gate_w, self.gate_b, self.ogate_w, self.ogate_b]

    def mixed(self, x, cos, sin):
        """[B,S,hidden] -> the mix before W_o, [B,S,H*D]."""
        B, S, _ = x.shape
        H, Hk, D = self.H, self.Hk, self.D
        q = self.q_proj(x).view(B, S, H, D).transpose(1, 2)
        k = self.k_proj(x).view(B, S, Hk, D).transpose(1, 2)
        v = self.v_proj(x).view(B, S, Hk, D).transpose(1, 2)
        q_r, k_r = apply_rotary_pos_emb(q, k, cos, sin)
        G = H // Hk
        k_rep, v_rep, k_plain = (t.repeat_interleave(G, dim=1) for t in (k_r, v, k))
        phi_q = torch.softmax(torch.einsum("bhsd,hdf->bhsf", q_r, self.feature_q), -1)
        phi_k = torch.softmax(torch.einsum("bhsd,hdf->bhsf", k_rep, self.feature_k), -1)
        z = F.linear(x.float(), self.gate_w.float(), self.gate_b.float())
        z = (torch.tanh(z / self.softcap) * self.softcap).view(B, S, 2, H).permute(2, 0, 3, 1)
        glob = self.kernels.mlstm(phi_q, phi_k, v_rep, z[0].contiguous(), z[1].contiguous())
        local = self.kernels.window(q_r, k_r, v)
        gate_in = torch.cat([q, k_plain, v_rep], -1)  # [B,H,S,3D]
        o = torch.sigmoid(torch.einsum("bhsc,hc->bhs", gate_in, self.ogate_w).float()
                          + self.ogate_b.float()[None, :, None])[..., None]
        out = torch.lerp(local, glob.to(local.dtype), o.to(local.dtype))  # o global + (1 - o) local
        return out.transpose(1, 2).reshape(B, S, H * D)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, **kwargs):
        cos, sin = position_embeddings
        return self.o_proj(self.mixed(hidden_states, cos, sin)), None


def build(shape, device, dtype):
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=131072, rms_norm_eps=1e-5)
    config._attn_implementation = "sdpa"
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialised in the model dtype: no float32 copy of 8B weights
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return config, model


def align_step_fn(config, model, kernels, batch, seq):
    """Stage I: returns (step function, trained parameter count)."""
    model.eval().requires_grad_(False)
    layers = model.model.layers
    mixers = [HybridAttention(layer.self_attn, config, kernels) for layer in layers]
    params = [p for m in mixers for p in m.new_parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=params[0].is_cuda)
    seen = {}

    def keep_input(idx):
        def hook(module, args, kwargs):
            seen[idx] = (kwargs["hidden_states"], kwargs["position_embeddings"])
        return hook

    def keep_target(idx):
        def hook(module, args):
            seen[("target", idx)] = args[0]
        return hook

    for idx, layer in enumerate(layers):
        layer.self_attn.register_forward_pre_hook(keep_input(idx), with_kwargs=True)
        layer.self_attn.o_proj.register_forward_pre_hook(keep_target(idx))
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=model.device)

    def step():
        with torch.no_grad():
            model.model(input_ids=ids)
        loss = 0.0
        for idx, m in enumerate(mixers):
            x, (cos, sin) = seen[idx]
            loss = loss + F.mse_loss(m.mixed(x, cos, sin).float(), seen[("target", idx)].float(), reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen.clear()
        return loss.detach()

    return step, sum(p.numel() for p in params)


def distill_step_fn(config, model, kernels, batch, seq, top_k=256, gamma=0.9, beta=0.1):
    """Stage II: returns (step function, trained parameter count)."""
    for layer in model.model.layers:
        layer.self_attn = HybridAttention(layer.self_attn, config, kernels)
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, fused=params[0].is_cuda)
    dev = model.device
    ids = torch.randint(0, config.vocab_size, (batch, seq + 1), device=dev)
    top_ids = torch.randint(0, config.vocab_size, (batch, seq, top_k), device=dev)
    top_logp = torch.log_softmax(torch.randn(batch, seq, top_k, device=dev), -1)

    def step():
        logits = model(input_ids=ids[:, :-1]).logits.float()
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        student_top = torch.log_softmax(logits.gather(-1, top_ids), -1)
        kl = (top_logp.exp() * (top_logp - student_top)).sum(-1).mean()
        loss = gamma * ce + beta * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step, sum(p.numel() for p in params)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=["align", "distill"], required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the result as one JSON line to this file")
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    config, model = build(args.shape, device, dtype)
    kernels = Kernels(device, args.seq)
    make = align_step_fn if args.stage == "align" else distill_step_fn
    step, trained = make(config, model, kernels, args.batch, args.seq)
    losses = [float(step()) for _ in range(args.warmup)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        losses.append(float(step()))
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = args.batch * args.seq
    result = {
        "stack": "python", "stage": args.stage, "shape": args.shape, "batch": args.batch, "seq": args.seq,
        "tokens_per_s": tokens / seconds, "ms_per_step": 1e3 * seconds, "trained_parameters": trained,
        # anchors.md's MFU convention (6 N T, N trained) fits full fine-tuning only.
        "mfu": 6 * trained * tokens / seconds / PEAK_BF16_FLOPS if args.stage == "distill" else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "losses": losses, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    mem = f"{result['peak_memory_gib']:.1f} GiB" if result["peak_memory_gib"] is not None else "n/a"
    mfu = f"{100 * result['mfu']:.1f} %" if result["mfu"] is not None else "n/a"
    print(f"python-stack stage={args.stage} shape={args.shape} B={args.batch} S={args.seq}: "
          f"{result['tokens_per_s']:,.0f} tok/s, {result['ms_per_step']:.0f} ms/step, MFU {mfu}, peak {mem}",
          flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

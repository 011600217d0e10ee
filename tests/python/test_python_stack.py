"""tools/python_stack_step.py, the Python-stack baseline measured beside bench-train on
the GPU, run on the CPU at a tiny shape: its mLSTM stand-in against the recurrent
definition, and both training steps end to end with finite, falling losses."""
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import python_stack_step as stack  # noqa: E402


def mlstm_recurrent(q, k, v, i, f, eps=1e-6):
    """The stabilised recurrence of spec/mlstm.md, one position at a time (float64)."""
    B, H, S, Dk = q.shape
    C = torch.zeros(B, H, Dk, v.shape[-1], dtype=torch.float64)
    n = torch.zeros(B, H, Dk, dtype=torch.float64)
    m = torch.zeros(B, H, dtype=torch.float64)
    out = []
    for t in range(S):
        logf = F.logsigmoid(f[..., t])
        m_new = torch.maximum(logf + m, i[..., t]) if t > 0 else i[..., t]
        a = torch.exp(logf + m - m_new) if t > 0 else torch.zeros_like(m_new)
        e = torch.exp(i[..., t] - m_new)
        C = a[..., None, None] * C + e[..., None, None] * k[..., t, :, None] * v[..., t, None, :]
        n = a[..., None] * n + e[..., None] * k[..., t, :]
        qs = q[..., t, :] / math.sqrt(Dk)
        den = torch.maximum((qs * n).sum(-1).abs(), torch.exp(-m_new)) + eps
        out.append(torch.einsum("bhd,bhde->bhe", qs, C) / den[..., None])
        m = m_new
    return torch.stack(out, 2)


def test_parallel_mlstm_equals_the_recurrence():
    torch.manual_seed(3)
    B, H, S, Dk, Dv = 2, 3, 37, 8, 5
    q, k = torch.randn(B, H, S, Dk, dtype=torch.float64), torch.randn(B, H, S, Dk, dtype=torch.float64)
    v = torch.randn(B, H, S, Dv, dtype=torch.float64)
    i = torch.randn(B, H, S, dtype=torch.float64) * 3
    f = torch.randn(B, H, S, dtype=torch.float64) * 3 + 2
    want = mlstm_recurrent(q, k, v, i, f)
    got = stack.mlstm_parallel(q, k, v, i, f).double()
    # mlstm_parallel computes in float32
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()


def run(stage, tmp_path, steps):
    out = tmp_path / f"{stage}.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "python_stack_step.py"), "--stage", stage,
                           "--shape", "tiny", "--batch", "2", "--seq", "48", "--steps", str(steps), "--warmup", "1",
                           "--device", "cpu", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"python-stack stage={stage} shape=tiny B=2 S=48:" in proc.stdout, proc.stdout
    return json.loads(out.read_text().splitlines()[-1])


def test_align_step_lowers_the_alignment_loss(tmp_path):
    result = run("align", tmp_path, 8)
    losses = result["losses"]
    assert all(math.isfinite(x) and x > 0 for x in losses), losses
    assert losses[-1] < losses[0], losses
    # only the new parameters train: 6 per layer
    H, D, hidden, layers = 4, 16, 64, 2
    assert result["trained_parameters"] == layers * (2 * H * D * D + 2 * H * hidden + 2 * H + H * 3 * D + H)


def test_distill_step_trains_the_whole_student(tmp_path):
    result = run("distill", tmp_path, 4)
    losses = result["losses"]
    assert all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0], losses
    assert result["mfu"] is not None and result["trained_parameters"] > 40_000

"""`xdistill train` end to end on tiny random teachers (CPU): Stage I alignment,
Stage II distillation with an online or a cached teacher, exact resume after an
interruption (by step budget and by SIGTERM), pretraining, and the student through
the model commands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hf_fixtures import make_checkpoint, run_xdistill, write_token_file, xdistill_bin

# One thread: the runs compared bit for bit must reduce in the same order.
os.environ["OMP_NUM_THREADS"] = "1"


def write_recipe(path: Path, teacher_path: Path, run_dir: Path, stage: str, **sections) -> Path:
    recipe = {
        "stage": stage,
        "run": {"dir": str(run_dir), "device": "cpu", "seed": 7, "log_every": 5},
        "teacher": {"path": str(teacher_path), "dtype": "f32"},
        "student": {"window": 8, "sinks": 2},
        "data": {"synthetic_vocab": 256, "seq_len": 32},
        "optim": {"lr": 1e-3, "min_lr": 1e-5, "weight_decay": 0.1},
        "schedule": {"kind": "warmup_cosine", "warmup_steps": 2, "steps": 6},
        "batch": {"micro_batch": 2, "grad_accum": 2},
        "loss": {"top_k": 16},
        "precision": {"compute": "f32"},
        "checkpoint": {"every": 2, "keep": 2},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(recipe))
    return path


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return make_checkpoint("llama3", tmp_path_factory.mktemp("teacher") / "llama3")


def test_align_reduces_the_loss_tenfold_and_trains_only_new_parameters(tmp_path, teacher):
    run = tmp_path / "align"
    r = write_recipe(tmp_path / "align.yaml", teacher, run, "align",
                     data={"synthetic_rows": 2, "seq_len": 24},  # a fixed batch
                     optim={"lr": 3e-2, "weight_decay": 0.1},
                     schedule={"kind": "warmup_cosine", "warmup_steps": 5, "steps": 120},
                     batch={"micro_batch": 2, "grad_accum": 1}, checkpoint={"every": 1000})
    run_xdistill("train", "--config", r)
    m = metrics(run)
    assert len(m) == 120 and all(rec["step"] == i + 1 for i, rec in enumerate(m))
    for key in ("loss", "loss_align", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_memory_gib"):
        assert key in m[0], key
    first, last = m[0]["loss_align"], m[-1]["loss_align"]
    assert first / last >= 10.0, (first, last)

    before, after = tensors(teacher), tensors(run / "final")
    new = [n for n in after if ".hybrid." in n]
    assert len(new) == 8 * 3  # 8 tensors per layer, 3 layers
    for name, t in before.items():  # everything copied from the teacher is bit-identical
        assert torch.equal(after[name], t), name
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["model_type"] == "xlstm_hybrid" and config["student"]["teacher_model_type"] == "llama"


def test_distill_online_and_cached_teacher_give_the_same_loss(tmp_path, teacher):
    online = write_recipe(tmp_path / "online.yaml", teacher, tmp_path / "online", "distill")
    run_xdistill("train", "--config", online)
    cache = tmp_path / "cache"
    cached = write_recipe(tmp_path / "cached.yaml", teacher, tmp_path / "cached", "distill",
                          teacher={"cache": str(cache)})
    run_xdistill("teacher-cache", "--config", cached)
    assert (cache / "meta.json").exists()
    run_xdistill("train", "--config", cached)
    a, b = metrics(tmp_path / "online"), metrics(tmp_path / "cached")
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        for key in ("loss", "loss_ce", "loss_kl", "grad_norm"):
            assert x[key] == y[key], (key, x, y)
    assert a[0]["loss_kl"] > 0
    assert_bit_identical(tensors(tmp_path / "online" / "final"), tensors(tmp_path / "cached" / "final"))


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, teacher):
    whole = write_recipe(tmp_path / "whole.yaml", teacher, tmp_path / "whole", "distill")
    run_xdistill("train", "--config", whole)
    parts = write_recipe(tmp_path / "parts.yaml", teacher, tmp_path / "parts", "distill")
    run_xdistill("train", "--config", parts, "--set", "run.stop_after_steps=3")
    assert not (tmp_path / "parts" / "final").exists()
    assert (tmp_path / "parts" / "checkpoints" / "step-00000003").is_dir()
    # Without --resume a run directory with checkpoints is refused.
    assert run_xdistill("train", "--config", parts, check=False).returncode == 2
    run_xdistill("train", "--config", parts, "--resume")
    assert_bit_identical(tensors(tmp_path / "whole" / "final"), tensors(tmp_path / "parts" / "final"))
    a, b = metrics(tmp_path / "whole"), metrics(tmp_path / "parts")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    kept = sorted(p.name for p in (tmp_path / "parts" / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000006"]  # keep: 2


def test_sigterm_writes_a_checkpoint_and_resume_continues_exactly(tmp_path, teacher):
    steps = {"kind": "warmup_constant", "warmup_steps": 2, "steps": 400}
    whole = write_recipe(tmp_path / "whole.yaml", teacher, tmp_path / "whole", "pretrain", schedule=steps,
                         checkpoint={"every": 1000}, batch={"micro_batch": 1, "grad_accum": 1})
    run_xdistill("train", "--config", whole)
    cut = write_recipe(tmp_path / "cut.yaml", teacher, tmp_path / "cut", "pretrain", schedule=steps,
                       checkpoint={"every": 1000}, batch={"micro_batch": 1, "grad_accum": 1})
    proc = subprocess.Popen([xdistill_bin(), "train", "--config", str(cut)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    stopped_at = len(metrics(tmp_path / "cut"))
    assert 3 <= stopped_at < 400
    assert (tmp_path / "cut" / "checkpoints" / f"step-{stopped_at:08d}").is_dir()
    run_xdistill("train", "--config", cut, "--resume")
    assert_bit_identical(tensors(tmp_path / "whole" / "final"), tensors(tmp_path / "cut" / "final"))


def test_pretrain_creates_a_tiny_teacher_and_learns(tmp_path):
    teacher = tmp_path / "made-here"
    r = write_recipe(tmp_path / "pre.yaml", teacher, tmp_path / "pre", "pretrain",
                     teacher={"create_tiny": True},
                     optim={"lr": 3e-3}, schedule={"kind": "warmup_cosine", "warmup_steps": 5, "steps": 40},
                     data={"synthetic_vocab": 64, "seq_len": 32})
    run_xdistill("train", "--config", r)
    assert (teacher / "config.json").exists()
    m = metrics(tmp_path / "pre")
    assert m[-1]["loss_ce"] < 0.7 * m[0]["loss_ce"], (m[0], m[-1])
    config = json.loads((tmp_path / "pre" / "final" / "config.json").read_text())
    assert config["model_type"] == "llama"


def test_student_works_with_the_model_commands_and_plots(tmp_path, teacher):
    r = write_recipe(tmp_path / "d.yaml", teacher, tmp_path / "d", "distill", schedule={"steps": 2})
    run_xdistill("train", "--config", r)
    student = tmp_path / "d" / "final"
    tokens = write_token_file(tmp_path / "t.txt", [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
    run_xdistill("logits", "--model", student, "--tokens", tokens, "--out", tmp_path / "l.safetensors",
                 "--device", "cpu")
    logits = load_file(tmp_path / "l.safetensors")["logits.0"]
    assert logits.shape == (12, 256) and torch.isfinite(logits).all()
    gen = run_xdistill("generate", "--model", student, "--tokens", tokens, "--device", "cpu")
    assert len(gen.stdout.split()) > 0
    info = run_xdistill("info", "--model", student).stdout
    assert "xlstm_hybrid student of a llama teacher" in info and "window 8 + 2 sinks" in info, info
    run_xdistill("plot", "loss", tmp_path / "d", "--out", tmp_path / "loss.svg")
    svg = (tmp_path / "loss.svg").read_text()
    assert svg.startswith("<svg") and "loss_kl" in svg

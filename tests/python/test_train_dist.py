"""`xdistill train` data-parallel on CPU: 2 and 4 Gloo processes through
`xdistill launch`, and 2 processes started by hand with SLURM's variables.

The reference for data parallelism is one process with the same global batch by
gradient accumulation. With one row per micro-batch the micro-batches are the same
rows in both runs: rank r of W takes global rows r, r + W, ..., so the W ranks'
k-th micro-batches are rows kW .. kW + W - 1, which one process takes as its
micro-batches kW .. kW + W - 1. The gradients then agree up to the order of the
fp32 additions (reduce-scatter / all-reduce vs. accumulation) and the clipping
factor computed from a norm summed in another order. AdamW divides by the root of
the second moment, which magnifies such rounding for elements whose gradient is
nearly zero, so after 6 steps single weights differ by up to ~5e-6 of the largest
weight while the whole differs by ~4e-8 (relative L2). The checks: relative L2
<= 1e-6 and max |a - b| / max |b| <= 1e-4, with losses and gradient norms equal
to 1e-5 relative. A rank seeing other rows moves the weights by ~1e-2; a wrong
averaging (a sum over ranks, a missing 1/grad_accum) hardly moves AdamW's weights
(it is scale invariant) but doubles the reported gradient norm, hence the
comparison of the norms.
"""
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

from hf_fixtures import xdistill_bin

# One thread per process: four ranks on a 2-core machine, and no thread-count
# dependent reduction order inside a rank.
os.environ["OMP_NUM_THREADS"] = "1"
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODELIST",
               "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_JOB_ID")
STEPS = 6
TOLERANCE = 1e-5


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def write_recipe(path: Path, teacher: Path, run_dir: Path, stage: str = "distill", **sections) -> Path:
    recipe = {
        "stage": stage,
        "run": {"dir": str(run_dir), "device": "cpu", "seed": 11, "log_every": 1},
        "teacher": {"path": str(teacher), "dtype": "f32", "create_tiny": True},
        "student": {"window": 8, "sinks": 2},
        "data": {"synthetic_vocab": 256, "seq_len": 24},
        "optim": {"lr": 3e-3, "min_lr": 1e-4, "weight_decay": 0.1, "grad_clip": 1.0},
        "schedule": {"kind": "warmup_cosine", "warmup_steps": 2, "steps": STEPS},
        "batch": {"micro_batch": 1, "grad_accum": 4},
        "loss": {"top_k": 8},
        "precision": {"compute": "f32"},
        "checkpoint": {"every": 1000, "keep": 2},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(recipe))
    return path


def train(recipe: Path, *sets: str, nproc: int = 1, resume: bool = False, check: bool = True,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """One process, or `nproc` through `xdistill launch`."""
    args = ["train", "--config", str(recipe)] + (["--resume"] if resume else [])
    for s in sets:
        args += ["--set", s]
    if nproc > 1:
        args = ["launch", "--nproc", str(nproc), "--"] + args
    proc = subprocess.run([xdistill_bin(), *args], capture_output=True, text=True, env=env or clean_env(),
                          timeout=300)
    if check:
        assert proc.returncode == 0, f"xdistill {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(f))
    assert out, f"no weights in {model_dir}"
    return out


def max_relative_difference(a: dict, b: dict) -> float:
    """max over tensors of max|a - b| / max|b| (float64)."""
    assert a.keys() == b.keys()
    worst = 0.0
    for name in b:
        x, y = a[name].double(), b[name].double()
        worst = max(worst, float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)))
    return worst


def relative_l2(a: dict, b: dict) -> float:
    """||a - b|| / ||b|| over all tensors together (float64)."""
    assert a.keys() == b.keys()
    num = sum(float((a[k].double() - b[k].double()).square().sum()) for k in b)
    den = sum(float(b[k].double().square().sum()) for k in b)
    return (num / den) ** 0.5


def assert_close(a: dict, b: dict):
    l2, worst = relative_l2(a, b), max_relative_difference(a, b)
    assert l2 <= 1e-6 and worst <= 1e-4, (l2, worst)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def assert_same_metrics(a: list[dict], b: list[dict], tolerance: float = TOLERANCE):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert x["tokens"] == y["tokens"], (x, y)
        for key in ("loss", "loss_ce", "loss_kl", "loss_align", "grad_norm"):
            if key in y:
                assert x[key] == pytest.approx(y[key], rel=tolerance), (key, x, y)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dist")


@pytest.fixture(scope="module")
def teacher(work) -> Path:
    return work / "teacher"  # created by rank 0 of the first run (teacher.create_tiny)


@pytest.fixture(scope="module")
def single(work, teacher) -> Path:
    """The reference: one process, 1 row x 4 micro-batches per step."""
    run = work / "single"
    train(write_recipe(work / "single.yaml", teacher, run))
    return run


@pytest.fixture(scope="module")
def sharded2(work, teacher) -> Path:
    """2 ranks x 1 row x 2 micro-batches, sharded optimizer (the default with 2 ranks)."""
    run = work / "sharded2"
    train(write_recipe(work / "sharded2.yaml", teacher, run, batch={"grad_accum": 2}), nproc=2)
    return run


def test_two_ranks_equal_one_process_with_gradient_accumulation(single, sharded2):
    m = metrics(sharded2)
    assert len(m) == STEPS and all(r["ranks"] == 2 for r in m)
    assert m[0]["tokens"] == 2 * 2 * 24  # global tokens: ranks x micro-batches x seq_len
    assert_same_metrics(m, metrics(single))
    assert any(r["grad_norm"] > 1.0 for r in m), "clipping (at 1.0) was never active; the test would miss it"
    assert_close(weights(sharded2 / "final"), weights(single / "final"))
    # Only rank 0 writes the run's files; the others keep a warnings-only log.
    assert (sharded2 / "train.log").read_text().count("step 6:") == 1
    assert "step 6:" not in (sharded2 / "train.rank1.log").read_text()


def test_the_reference_is_sensitive(single, work, teacher):
    """A different global batch (no accumulation) must not pass the tolerance."""
    run = work / "no_accum"
    train(write_recipe(work / "no_accum.yaml", teacher, run, batch={"grad_accum": 2}))
    assert relative_l2(weights(run / "final"), weights(single / "final")) > 1e-3


def test_sharded_equals_unsharded_optimizer(sharded2, work, teacher):
    run = work / "unsharded2"
    proc = train(write_recipe(work / "unsharded2.yaml", teacher, run, batch={"grad_accum": 2}),
                 "dist.shard_optimizer=false", nproc=2)
    assert "replicated (all-reduce)" in proc.stderr + proc.stdout + (run / "train.log").read_text()
    assert_same_metrics(metrics(run), metrics(sharded2))
    assert_close(weights(run / "final"), weights(sharded2 / "final"))


def test_four_ranks_equal_one_process(single, work, teacher):
    run = work / "sharded4"
    train(write_recipe(work / "sharded4.yaml", teacher, run, batch={"grad_accum": 1}),
          "dist.bucket_mb=0.01", nproc=4)  # small buckets: several reduce-scatters per backward
    assert_same_metrics(metrics(run), metrics(single))
    assert_close(weights(run / "final"), weights(single / "final"))


def test_sharded_checkpoint_resumes_to_identical_weights(sharded2, work, teacher):
    run = work / "resumed2"
    recipe = write_recipe(work / "resumed2.yaml", teacher, run, batch={"grad_accum": 2})
    train(recipe, "run.stop_after_steps=3", nproc=2)
    ckpt = run / "checkpoints" / "step-00000003"
    assert (ckpt / "COMPLETE.json").is_file()
    marker = json.loads((ckpt / "COMPLETE.json").read_text())
    assert marker["world_size"] == 2 and marker["step"] == 3
    assert sorted(p.name for p in (ckpt / "optim").iterdir()) == ["shard-00000-of-00002.pt",
                                                                    "shard-00001-of-00002.pt"]
    assert (ckpt / "model").is_dir() and not (ckpt / "optimizer").exists()
    assert not (run / "final").exists()
    train(recipe, nproc=2, resume=True)
    a, b = weights(run / "final"), weights(sharded2 / "final")
    for name in b:
        assert torch.equal(a[name], b[name]), name
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(sharded2)]


def test_resume_with_another_world_size(sharded2, single, work, teacher):
    # A 2-rank sharded checkpoint, resumed by one process (the shards re-cut for one
    # rank) accumulating 4 micro-batches: the same global batch.
    run = work / "reshard"
    recipe = write_recipe(work / "reshard.yaml", teacher, run, batch={"grad_accum": 2})
    train(recipe, "run.stop_after_steps=3", nproc=2)
    refused = train(recipe, "batch.grad_accum=4", resume=True, check=False)
    assert refused.returncode == 2
    assert "sharded over 2 ranks" in refused.stderr and "dist.shard_optimizer=true" in refused.stderr
    proc = train(recipe, "batch.grad_accum=4", "dist.shard_optimizer=true", resume=True)
    assert "resharding to 1" in proc.stderr + proc.stdout
    assert_close(weights(run / "final"), weights(sharded2 / "final"))

    # A one-process (unsharded) checkpoint resumed by 2 sharded ranks.
    run = work / "grow"
    recipe = write_recipe(work / "grow.yaml", teacher, run)
    train(recipe, "run.stop_after_steps=3")
    assert (run / "checkpoints" / "step-00000003" / "optimizer").is_dir()
    train(recipe, "batch.grad_accum=2", nproc=2, resume=True)
    assert_close(weights(run / "final"), weights(single / "final"))


def free_port_for_slurm_job() -> tuple[int, int]:
    """A SLURM job id whose derived port (20000 + id % 20000) is free now."""
    import socket
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if 20000 <= port < 40000:
            return 700000 + (port - 20000), port
    pytest.skip("no free port in 20000..39999")


def test_slurm_variables_start_the_same_training(sharded2, work, teacher):
    run = work / "slurm"
    recipe = write_recipe(work / "slurm.yaml", teacher, run, batch={"grad_accum": 2})
    job_id, port = free_port_for_slurm_job()
    procs = []
    for rank in range(2):  # what `srun --ntasks=2` starts
        env = clean_env(SLURM_PROCID=rank, SLURM_NTASKS=2, SLURM_LOCALID=rank, SLURM_NODELIST="localhost",
                        SLURM_JOB_ID=job_id)
        procs.append(subprocess.Popen([xdistill_bin(), "train", "--config", str(recipe)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    assert f"rank 1/2 (local 1) via slurm, rendezvous localhost:{port}" in outs[1]
    a, b = weights(run / "final"), weights(sharded2 / "final")
    for name in b:
        assert torch.equal(a[name], b[name]), name


def test_a_signal_to_one_rank_stops_all_at_the_same_step(work, teacher):
    steps = {"kind": "warmup_constant", "warmup_steps": 2, "steps": 120}
    whole = work / "sig_whole"
    train(write_recipe(work / "sig_whole.yaml", teacher, whole, schedule=steps, batch={"grad_accum": 1}), nproc=2)

    run = work / "sig_cut"
    recipe = write_recipe(work / "sig_cut.yaml", teacher, run, schedule=steps, batch={"grad_accum": 1})
    import socket
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):  # started by hand, so that only rank 1 gets the signal
        env = clean_env(RANK=rank, WORLD_SIZE=2, LOCAL_RANK=rank, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([xdistill_bin(), "train", "--config", str(recipe)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    log = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGUSR1)  # SLURM's --signal=USR1@T warning, to one task
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [128 + signal.SIGUSR1] * 2, "\n".join(outs)
    stopped_at = len(metrics(run))
    assert 3 <= stopped_at < 120
    ckpt = run / "checkpoints" / f"step-{stopped_at:08d}"
    assert (ckpt / "COMPLETE.json").is_file()
    train(recipe, nproc=2, resume=True)
    a, b = weights(run / "final"), weights(whole / "final")
    for name in b:
        assert torch.equal(a[name], b[name]), name

"""The README's main job, reduced (CI): `xdistill demo` runs every stage and writes a
well-formed report; a second invocation resumes (skips every finished stage)."""
import json
import os
import subprocess
from pathlib import Path

BIN = os.environ.get("XDISTILL_BIN", str(Path(__file__).parents[2] / "build" / "xdistill"))


def run_demo(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDISTILL_PLAIN_PROGRESS="1", OMP_NUM_THREADS="2")
    return subprocess.run([BIN, "demo", "--out", str(out), "--steps-scale", "0.03", "--eval-items", "8"],
                          capture_output=True, text=True, env=env, timeout=900)


def test_reduced_demo_completes_with_a_well_formed_report(tmp_path):
    out = tmp_path / "demo"
    proc = run_demo(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    student = report["students"][0]
    assert "alpha_star" in student
    rows = {r["name"] for r in student["benchmarks"]} if "benchmarks" in student else None
    md = (out / "report.md").read_text()
    for task in ("arithmetic", "code", "recall_d16"):
        assert f"| {task} |" in md, md
        if rows is not None:
            assert task in rows
    assert "C_0 = " in md
    svg = (out / "c_alpha.svg").read_text()
    assert svg.startswith("<svg") or "<svg" in svg[:200]
    for model in ("teacher", "student", "theta0", "expert-code"):
        assert (out / model / "config.json").exists(), model
    # Resuming a finished demo re-runs nothing and prints the same report.
    again = run_demo(out)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("done already (skipped)") >= 12, again.stderr
    assert md in again.stdout

"""The README's main job, reduced (CI): `xdistill demo` runs every stage and writes a
well-formed report; a second invocation resumes (skips every finished stage)."""
import json
import os
import re
import subprocess
from pathlib import Path

BIN = os.environ.get("XDISTILL_BIN", str(Path(__file__).parents[2] / "build" / "xdistill"))
TASKS = ("arithmetic", "code", "recall_d15", "recall_d48", "recall_d96", "recall_d144")
STAGES = 13


def run_demo(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDISTILL_PLAIN_PROGRESS="1", OMP_NUM_THREADS="2")
    return subprocess.run([BIN, "demo", "--out", str(out), "--device", "cpu", "--steps-scale", "0.03",
                           "--eval-items", "8"], capture_output=True, text=True, env=env, timeout=900)


def test_reduced_demo_completes_with_a_well_formed_report(tmp_path):
    out = tmp_path / "demo"
    proc = run_demo(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every stage ran, in order, with the progress view's numbering.
    ran = re.findall(r"demo \[(\d+)/(\d+)\]", proc.stderr)
    assert [int(i) for i, _ in ran] == list(range(1, STAGES + 1)), proc.stderr
    assert {int(n) for _, n in ran} == {STAGES}

    report = json.loads((out / "report.json").read_text())
    student = report["students"][0]
    assert "alpha_star" in student
    md = (out / "report.md").read_text()
    for task in TASKS:
        assert f"| {task} |" in md, md
    c0 = float(re.search(r"C_0 = ([0-9.]+)", md).group(1))
    assert 0.0 <= c0 <= 1.0
    svg = (out / "c_alpha.svg").read_text()
    assert "<svg" in svg[:200]

    # The corpus is what the report says it is: held-out arithmetic with a worked answer
    # whose extracted number is the sum, and recall queries at the stated distance.
    for line in (out / "corpus" / "tasks" / "arithmetic.jsonl").read_text().splitlines():
        item = json.loads(line)
        a, b = map(int, re.fullmatch(r"add (\d\d)\+(\d\d):", item["prompt"]).groups())
        assert int(item["answer"]) == a + b
    for line in (out / "corpus" / "tasks" / "recall_d48.jsonl").read_text().splitlines():
        item = json.loads(line)
        key = item["context"][-1]
        pairs = item["context"].split(" ? ")[0]
        at = pairs.index(" " + key)  # keys are unique within a list
        gap = (len(item["context"]) - 1) - (at + 1)  # query key to listed key, in bytes = tokens
        assert 48 <= gap <= 48 + 5, item
        assert pairs[at + 2] == item["choices"][item["label"]]
    train = (out / "corpus" / "train" / "arithmetic.jsonl").read_text().splitlines()
    first = json.loads(train[0])["text"]
    a, b, total = re.fullmatch(r"add (\d\d)\+(\d\d): .* => (\d{3})\n", first).groups()
    assert int(a) + int(b) == int(total), first

    for model in ("teacher", "student", "theta0", "expert-code"):
        assert (out / model / "config.json").exists(), model
    # Resuming a finished demo re-runs nothing and prints the same report.
    again = run_demo(out)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("done already (skipped)") == STAGES, again.stderr
    assert md in again.stdout

"""`xdistill eval compare` from the command line: lm-evaluation-harness result files
(fixtures in the harness's layout), xdistill files with per-sample records (paired
bootstrap), the JSON report, the printed table, the plot, and the edge cases."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from hf_fixtures import run_xdistill

ROOT = Path(os.environ.get("XD_SOURCE_DIR", Path(__file__).resolve().parents[2]))
FIX = ROOT / "tests" / "eval" / "fixtures"


def test_harness_files_report_and_table(tmp_path):
    report = tmp_path / "report.json"
    proc = run_xdistill("eval", "compare", "--teacher", FIX / "lm_eval_teacher.json",
                        "--student", FIX / "lm_eval_student.json", "--out", report, "--plot", tmp_path / "c.svg")
    rep = json.loads(report.read_text())
    s = rep["students"][0]
    # Hand-computed: thresholds 0, 0, .05, .05, .1, .1, .2, .2 over 8 common benchmarks.
    assert s["alpha_star"] == pytest.approx(0.05, abs=1e-12)
    assert s["C_0"] == 0.25 and s["lossless"] is False
    assert s["only_in_teacher"] == ["truthfulqa_mc2"] and s["only_in_student"] == ["lambada_openai"]
    by_name = {b["name"]: b for b in s["benchmarks"]}
    assert by_name["gsm8k"]["metric"] == "exact_match,strict-match"
    assert by_name["wikitext"]["higher_is_better"] is False
    assert by_name["winogrande"]["recovery"] == pytest.approx(0.8)
    assert [c["C"] for c in s["curve"]] == [0.25, 0.5, 0.75, 1.0]
    assert s["bootstrap"] is None  # harness files carry no per-sample records
    # The table names every benchmark and both ignored ones.
    for name in list(by_name) + ["truthfulqa_mc2", "lambada_openai", "alpha* = 0.0500"]:
        assert name in proc.stdout
    assert "gap within stderr" in proc.stdout  # arc_easy ties exactly
    svg = (tmp_path / "c.svg").read_text()
    assert svg.startswith("<?xml") and "α* = 0.05" in svg


def test_metric_override_and_several_students(tmp_path):
    report = tmp_path / "r.json"
    run_xdistill("eval", "compare", "--teacher", FIX / "lm_eval_teacher.json",
                 "--student", FIX / "lm_eval_student.json", "--student", FIX / "lm_eval_teacher.json",
                 "--metric", "gsm8k=exact_match,flexible-extract", "--alpha-max", "0.3", "--out", report)
    rep = json.loads(report.read_text())
    assert rep["alpha_max"] == 0.3
    gsm = next(b for b in rep["students"][0]["benchmarks"] if b["name"] == "gsm8k")
    assert gsm["metric"] == "exact_match,flexible-extract"
    assert gsm["tie_threshold"] == pytest.approx(1 - 0.51 / 0.52)
    assert rep["students"][1]["alpha_star"] == 0.0 and rep["students"][1]["name"] == "meta-llama/Llama-3.1-8B"


def test_no_benchmark_in_common_is_an_error(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"results": {"piqa": {"acc,none": 0.8, "alias": "piqa"}}}))
    b.write_text(json.dumps({"results": {"arc_easy": {"acc,none": 0.7, "alias": "arc_easy"}}}))
    proc = run_xdistill("eval", "compare", "--teacher", a, "--student", b, check=False)
    assert proc.returncode == 1
    assert "no benchmark in common" in proc.stderr


def test_not_a_results_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"model\": 1}")
    proc = run_xdistill("eval", "compare", "--teacher", bad, "--student", bad, check=False)
    assert proc.returncode == 1 and "bad.json" in proc.stderr


def synthetic_file(path: Path, name: str, accuracies: dict[str, float], n: int, seed: int) -> None:
    """An xdistill results file with per-sample 0/1 records."""
    rng = random.Random(seed)
    results, samples = {}, {}
    for task, p in accuracies.items():
        recs = [{"id": str(i), "acc": float(rng.random() < p)} for i in range(n)]
        mean = sum(r["acc"] for r in recs) / n
        results[task] = {"alias": task, "acc,none": mean, "acc_stderr,none": "N/A"}
        samples[task] = recs
    path.write_text(json.dumps({"results": results, "samples": samples, "xdistill": {"model": name}}))


def test_paired_bootstrap_reproducible(tmp_path):
    t, s = tmp_path / "t.json", tmp_path / "s.json"
    synthetic_file(t, "teacher", {"a": 0.8, "b": 0.6, "c": 0.7}, 300, seed=1)
    synthetic_file(s, "student", {"a": 0.78, "b": 0.55, "c": 0.72}, 300, seed=2)
    reports = []
    for seed in ["7", "7", "8"]:
        out = tmp_path / f"r{len(reports)}.json"
        run_xdistill("eval", "compare", "--teacher", t, "--student", s, "--bootstrap", "400", "--seed", seed,
                     "--out", out)
        reports.append(json.loads(out.read_text())["students"][0])
    assert reports[0] == reports[1]
    assert reports[0]["bootstrap"] != reports[2]["bootstrap"]
    boot = reports[0]["bootstrap"]
    lo, hi = boot["alpha_star_ci"]
    assert lo <= reports[0]["alpha_star"] <= (hi if hi is not None else float("inf"))
    for b in reports[0]["benchmarks"]:
        assert b["paired_samples"] == 300
        assert b["recovery_ci"][0] <= b["recovery"] <= b["recovery_ci"][1]
    assert len(boot["C_alpha_ci"]) == 51


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert not installed")
def test_png_plot(tmp_path):
    png = tmp_path / "c.png"
    run_xdistill("eval", "compare", "--teacher", FIX / "lm_eval_teacher.json",
                 "--student", FIX / "lm_eval_student.json", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_converter_suggests_svg(tmp_path):
    import subprocess
    from hf_fixtures import xdistill_bin
    proc = subprocess.run([xdistill_bin(), "eval", "compare", "--teacher", FIX / "lm_eval_teacher.json",
                           "--student", FIX / "lm_eval_student.json", "--plot", tmp_path / "c.png"],
                          capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert proc.returncode == 1 and "--plot out.svg" in proc.stderr

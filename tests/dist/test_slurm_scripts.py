"""The SLURM job scripts: syntax, and the preemption path of common.sh run against
stand-ins for srun, scontrol and xdistill (no SLURM here).

The stand-in srun starts its command and forwards SIGTERM to it, as srun does; the
stand-in trainer records the signal, "checkpoints" and exits with 128 + 15, as
`xdistill train` does on SIGTERM; the stand-in scontrol records its arguments.
"""
import os
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(os.environ.get("XD_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
SLURM = ROOT / "scripts" / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sbatch")) + sorted(SLURM.glob("*.sh"))


def test_there_are_scripts_for_every_stage():
    names = {p.name for p in SCRIPTS}
    assert {"stage1_align.sbatch", "expert_array.sbatch", "merge.sbatch", "eval.sbatch",
            "common.sh", "pipeline.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", [p for p in SCRIPTS if p.suffix == ".sbatch"], ids=lambda p: p.name)
def test_sbatch_files_log_per_job(script):
    text = script.read_text()
    assert "#SBATCH --output=logs/%x-%" in text
    assert "#SBATCH --job-name=" in text


def write_exe(path, text):
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def fake_cluster(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_exe(bin_dir / "srun", """#!/usr/bin/env bash
# Drop srun's own options, run the command, forward signals like srun does.
while [[ $1 == --* ]]; do shift; done
"$@" &
child=$!
trap 'kill -TERM $child' TERM
trap 'kill -USR1 $child' USR1
while true; do wait $child; rc=$?; kill -0 $child 2>/dev/null || exit $rc; done
""")
    write_exe(bin_dir / "scontrol", f"""#!/usr/bin/env bash
echo "$@" >> {tmp_path}/scontrol.calls
""")
    write_exe(tmp_path / "xdistill", f"""#!/usr/bin/env bash
echo "$@" > {tmp_path}/trainer.args
trap 'echo checkpointed > {tmp_path}/trainer.signal; exit 143' TERM
touch {tmp_path}/trainer.started
for i in $(seq 200); do sleep 0.1; done
echo finished > {tmp_path}/trainer.finished
""")
    env = dict(os.environ)
    env.update({"PATH": f"{bin_dir}:{env['PATH']}", "XDISTILL_HOME": str(ROOT), "XDISTILL": str(tmp_path / "xdistill"),
                "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "xd-stage1", "SLURM_JOB_NODELIST": "node[01-02]",
                "RECIPE": "recipe.yaml", "RUN_DIR": str(tmp_path / "run"), "NCCL_DEBUG": "WARN"})
    return tmp_path, env


def wait_for(path, seconds=20):
    deadline = time.time() + seconds
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_usr1_checkpoints_and_requeues(fake_cluster):
    tmp, env = fake_cluster
    job = subprocess.Popen(["bash", str(SLURM / "stage1_align.sbatch")], env=env, cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(tmp / "trainer.started")
    job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@600 does
    out, _ = job.communicate(timeout=30)
    assert job.returncode == 0, out
    assert (tmp / "trainer.signal").read_text().strip() == "checkpointed"
    assert not (tmp / "trainer.finished").exists()
    assert (tmp / "scontrol.calls").read_text().split() == ["requeue", "4242"]
    args = (tmp / "trainer.args").read_text().split()
    assert args[:4] == ["train", "--resume", "--config", "recipe.yaml"]
    assert f"run.dir={tmp / 'run'}" in args
    assert "NCCL_DEBUG=WARN" in out  # the user's NCCL settings are shown, untouched


def test_a_finished_run_is_not_requeued(fake_cluster):
    tmp, env = fake_cluster
    write_exe(tmp / "xdistill", "#!/usr/bin/env bash\nexit 0\n")
    job = subprocess.run(["bash", str(SLURM / "stage1_align.sbatch")], env=env, cwd=tmp,
                         capture_output=True, text=True, timeout=30)
    assert job.returncode == 0, job.stdout + job.stderr
    assert not (tmp / "scontrol.calls").exists()


def test_a_failed_run_fails_the_job(fake_cluster):
    tmp, env = fake_cluster
    write_exe(tmp / "xdistill", "#!/usr/bin/env bash\nexit 7\n")
    job = subprocess.run(["bash", str(SLURM / "stage1_align.sbatch")], env=env, cwd=tmp,
                         capture_output=True, text=True, timeout=30)
    assert job.returncode == 7
    assert not (tmp / "scontrol.calls").exists()


def test_expert_array_picks_its_domain(fake_cluster):
    tmp, env = fake_cluster
    (tmp / "domains.txt").write_text("math recipes/math.yaml\ncode recipes/code.yaml\n")
    write_exe(tmp / "xdistill", f"#!/usr/bin/env bash\necho \"$@\" > {tmp}/trainer.args\n")
    env.update({"DOMAINS": str(tmp / "domains.txt"), "THETA0": "/ckpt/theta0", "RUN_ROOT": str(tmp / "experts"),
                "SLURM_ARRAY_TASK_ID": "1"})
    job = subprocess.run(["bash", str(SLURM / "expert_array.sbatch")], env=env, cwd=tmp,
                         capture_output=True, text=True, timeout=30)
    assert job.returncode == 0, job.stdout + job.stderr
    args = (tmp / "trainer.args").read_text().split()
    assert args[:4] == ["train", "--resume", "--config", "recipes/code.yaml"]
    assert "student.init=/ckpt/theta0" in args and f"run.dir={tmp / 'experts' / 'code'}" in args

"""``python -m fdn.train`` stopped by SIGTERM, by SIGKILL, or with a damaged checkpoint, then run again; and
(in process) a signal that cuts an evaluation.

Every run is a real subprocess of the tiny demo config stretched to 100 steps (so a signal lands mid-run), all
sharing one persistent XLA cache: the reference run compiles, the others load. A resumed run must end with
the reference's final weights and evaluation history exactly (one step program, one CPU: XLA is deterministic
there, and the checkpoint holds the data iterator's position).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from fdn.serve import checkpoint
from fdn.train import loop as train_loop
from tests.test_train import XLA_CACHE, restore_latest, shapes_dir, tiny, xla_cache  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 25  # x (2 + 1 + 1) epochs = 100 steps; evaluations at 50 and 100
TOTAL_STEPS = 100
CHECKPOINT_EVERY = 25
ABSL_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # "W1202 11:27:33.225 ... image_feature.py:339] ..."
STEP_DIR = re.compile(r"^\d+$")  # a finished Orbax step directory (unfinished ones carry a tmp suffix)


def command(workdir, data_dir):
    return [
        sys.executable,
        "-m",
        "fdn.train",
        "--config=configs/demo_train.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        f"--config.optim.steps_per_epoch={STEPS_PER_EPOCH}",
        f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}",
        "--config.log_every_steps=10",
    ]


def environment():
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(XLA_CACHE),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def train(workdir, data_dir, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(workdir, data_dir),
        check=False,
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(workdir, data_dir, log_path) -> subprocess.Popen:
    return subprocess.Popen(
        command(workdir, data_dir),
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=open(log_path, "w"),
        text=True,
    )


def error_line(stderr: str, command: str) -> str:
    """The one line a user error prints; other lines may only be absl log lines (a data thread's warning)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not ABSL_LOG_LINE.match(ln)]
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), stderr[-3000:]
    return lines[0]


def finished_steps(workdir) -> list[int]:
    directory = Path(workdir) / train_loop.CHECKPOINTS
    return sorted(int(p.name) for p in directory.iterdir() if STEP_DIR.match(p.name)) if directory.is_dir() else []


def outcome(workdir):
    """The final model's weights and every evaluation's metrics (without their wall time)."""
    _, variables, info = checkpoint.load_model(Path(workdir) / train_loop.FINAL_MODEL)
    lines = [json.loads(x) for x in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    evals = [{k: v for k, v in x.items() if k not in ("seconds", "time")} for x in lines if x["kind"] == "eval"]
    return [np.asarray(x) for x in jax.tree.leaves(variables)], evals, info["metadata"]["step"]


def assert_same_outcome(workdir, reference):
    leaves, evals, step = outcome(workdir)
    ref_leaves, ref_evals, ref_step = reference
    assert step == ref_step == TOTAL_STEPS
    assert evals == ref_evals and [e["step"] for e in evals] == [50, 100]
    assert len(leaves) == len(ref_leaves)
    for a, b in zip(leaves, ref_leaves):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def reference(shapes_dir, tmp_path_factory):  # noqa: F811
    """An uninterrupted run: its directory and outcome."""
    workdir = tmp_path_factory.mktemp("reference")
    done = train(workdir, shapes_dir, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, outcome(workdir)


@pytest.mark.slow
def test_sigterm_saves_the_current_step_exits_143_and_the_rerun_resumes(reference, shapes_dir, tmp_path):  # noqa: F811
    workdir = tmp_path / "run"
    proc = start(workdir, shapes_dir, tmp_path / "stderr.txt")
    for line in proc.stdout:  # the signal comes once training has begun, long before step 100
        if line.startswith("train: first step"):
            break
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    assert proc.wait(timeout=120) == 143
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"fdn\.train: interrupted \(SIGTERM\) at step (\d+); run the same command again to resume", last
    )
    assert match, stderr
    step = int(match.group(1))
    assert 1 <= step < TOTAL_STEPS and finished_steps(workdir)[-1] == step  # the very step it stopped at
    assert not (workdir / train_loop.FINAL_MODEL).exists()

    again = train(workdir, shapes_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"train: resumed from step {step} in " in again.stdout
    assert_same_outcome(workdir, reference[1])


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_resumes_from_it_to_the_same_weights(reference, shapes_dir, tmp_path):  # noqa: F811
    workdir = tmp_path / "run"
    proc = start(workdir, shapes_dir, tmp_path / "stderr.txt")
    deadline = time.time() + 600
    while not finished_steps(workdir) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no handler runs, whatever was being written stays as it was
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    steps = finished_steps(workdir)
    assert steps and CHECKPOINT_EVERY <= steps[-1] < TOTAL_STEPS, steps

    again = train(workdir, shapes_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"train: resumed from step {steps[-1]} in " in again.stdout
    assert_same_outcome(workdir, reference[1])


def damage_truncate_array_file(step_dir: Path) -> Path:
    victim = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    return victim


def damage_garbage_json(step_dir: Path) -> Path:
    victim = step_dir / "extra" / "metadata"  # the JSON item (best score, ...)
    victim.write_text("{not json")
    return victim


@pytest.mark.slow
@pytest.mark.parametrize("damage", [damage_truncate_array_file, damage_garbage_json])
def test_a_damaged_training_checkpoint_is_one_line_exit_2_and_nothing_is_deleted(
    reference,
    shapes_dir,  # noqa: F811  (the fixture imported from tests.test_train)
    tmp_path,
    damage,
):
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    step_dir = workdir / train_loop.CHECKPOINTS / str(finished_steps(workdir)[-1])
    damage(step_dir)
    before = sorted((str(p), p.stat().st_size) for p in workdir.rglob("*"))
    done = train(workdir, shapes_dir, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    last = error_line(done.stderr, "fdn.train")
    assert str(step_dir) in last and "delete" in last, last
    assert sorted((str(p), p.stat().st_size) for p in workdir.rglob("*")) == before


@pytest.mark.slow
def test_a_signal_during_an_evaluation_saves_its_step_and_the_rerun_evaluates_it(
    xla_cache,  # noqa: F811  (fixtures imported from tests.test_train)
    shapes_dir,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    config = tiny(shapes_dir)  # 8 steps, evaluations at 4 and 8 (tests/test_train.py's program)
    reference = train_loop.run(config, tmp_path / "full", log=lambda *a: None)

    def cut(*args, **kwargs):  # Ctrl-C while the first evaluation (step 4) runs over the split
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal should have stopped the evaluation")

    with monkeypatch.context() as mp:
        mp.setattr(train_loop.evaluation, "accumulate", cut)
        with pytest.raises(train_loop.TrainingInterrupted) as caught:
            train_loop.run(config, tmp_path / "cut", log=lambda *a: None)
    assert caught.value.step == 4 and caught.value.exit_code == 130
    step, _, extra = restore_latest(tmp_path / "cut")
    assert step == 4 and extra["pending_eval"] is True and extra["best_step"] is None

    again = train_loop.run(config, tmp_path / "cut", log=lambda *a: None)
    assert again["start_step"] == 4 and again["best_step"] == reference["best_step"]
    drop = ("seconds", "time")
    assert {k: v for k, v in again["metrics"].items() if k not in drop} == {
        k: v for k, v in reference["metrics"].items() if k not in drop
    }
    evals = [outcome(d)[1] for d in (tmp_path / "full", tmp_path / "cut")]
    assert evals[0] == evals[1] and [e["step"] for e in evals[0]] == [4, 8]

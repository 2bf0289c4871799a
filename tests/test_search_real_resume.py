"""The README's first command with the real candidate trainer: ``configs/demo.py`` runs a few candidates and
writes its report, and a search killed with SIGKILL resumes without losing or redoing more than the candidate
in flight. Minutes on a 2-core CPU (data, encoder calibration, compiles), hence ``slow``.

Shrunk with overrides only (no teacher, stage 1 only, fewer crops), so that it is still ``configs/demo.py``
that is loaded. The fdn_shapes data and the XLA cache are shared by the runs.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from fdn.search import run_log
from tests.test_search import ROOT, XLA_CACHE, strip_times

pytestmark = pytest.mark.slow
N = 2


def _flags(workdir, data_dir):
    return [
        "--config=configs/demo.py",
        f"--workdir={workdir}",
        f"--config.num_candidates={N}",
        f"--config.data.data_dir={data_dir}",
        "--config.teacher.kind=none",
        "--config.max_stage=1",
        "--config.encoder.calibrate_batches=1",
        "--config.data.val_examples=16",
        "--config.candidate.stage1.num_examples=64",
        "--config.log.progress=false",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
    ]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def _step_files(step_dir):
    return {p.relative_to(step_dir): p.read_bytes() for p in sorted(step_dir.rglob("*")) if p.is_file()}


def test_demo_config_runs_then_a_killed_search_resumes_seamlessly(tmp_path):
    data_dir = tmp_path / "data"
    # 1. the README's command, uninterrupted: candidates logged, the report written
    straight = tmp_path / "straight"
    proc = subprocess.run(
        [sys.executable, "-m", "fdn.search", *_flags(straight, data_dir)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = run_log.read(straight)
    assert [r["index"] for r in records] == list(range(N))
    # (a random encoder after a dozen stage-1 steps may well score 0: the reward is not what this test checks)
    assert all(r["failure"] is None and 0.0 <= r["reward"] <= 1.0 for r in records), records
    for name in ("leaderboard.md", "rewards.png", "entropy.png", "reward_vs_params.png"):
        assert (straight / "report" / name).is_file(), name

    # 2. the same search with the real trainer, counting its stage-1 calls, killed -9 once candidate 0 is saved
    workdir, calls = tmp_path / "killed", tmp_path / "stage1_calls.txt"
    cmd = [sys.executable, "-m", "tests.fake_candidate", *_flags(workdir, data_dir)]
    env = _env(FDN_TRAINER="real", FDN_STAGE1_CALLS=str(calls))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step_dir = workdir / "checkpoints" / "1"
    deadline = time.time() + 1200
    while time.time() < deadline and proc.poll() is None and not step_dir.is_dir():
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved_steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved_steps[-1] == 1, saved_steps  # killed while candidate 1 was in flight
    log_at_kill = (workdir / run_log.FILENAME).read_bytes()
    kept_prefix = b"".join(log_at_kill.splitlines(keepends=True)[:1])
    step_at_kill = _step_files(step_dir)
    calls_before = calls.read_text().split()
    assert len(calls_before) - 1 <= 1  # at most the candidate in flight had started

    # 3. resume: what was saved stays byte for byte, only the candidate in flight is trained again
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / run_log.FILENAME).read_bytes().startswith(kept_prefix)
    assert _step_files(step_dir) == step_at_kill
    calls_after = calls.read_text().split()
    assert len(calls_after) - len(calls_before) == N - 1  # the resumed session trained candidate 1 only
    assert strip_times(run_log.read(workdir)) == strip_times(records)

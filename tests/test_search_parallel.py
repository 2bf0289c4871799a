"""Parallel candidates with a fixed lag (issue 13): results depend on (seed, lag) only, never on the worker count
or on timing; a killed multi-worker run resumes to the uninterrupted log; the demo runs on fake CPU devices.

The in-process tests run the pool's threads on the one CPU device (``worker_devices`` patched: the pool and
the in-order commits are what they check); the subprocess tests get real separate devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=4``, which must be set before JAX initialises.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fdn.search import early_stop, run_log
from fdn.search import loop as search_loop
from fdn.search.parallel import streams
from fdn.search.parallel.devices import WorkersError
from fdn.search.parallel.workers import Job, Outcome, candidate_key
from tests.test_search import ROOT, XLA_CACHE, run, strip_times, tiny_config, voc_dir  # noqa: F401  (fixture)

FOUR_DEVICES = "--xla_force_host_platform_device_count=4"


def _config(data_dir, n, lag, workers=1):
    c = tiny_config(data_dir, n=n)
    c.parallel.lag = lag
    c.parallel.workers = workers
    c.early_stop.maxval = 0.35  # a running mean that some stage-1 rewards fall below: the rule decides things
    return c


def _threads(monkeypatch, n):
    """Makes the search build ``n`` workers (threads, trainers) on the default device."""
    monkeypatch.setattr(search_loop, "worker_devices", lambda config: [None] * n)


@pytest.fixture(scope="module")
def lag3(voc_dir, tmp_path_factory):  # noqa: F811
    """The reference: 8 candidates, lag 3, one (inline) worker."""
    workdir = tmp_path_factory.mktemp("lag3")
    run(_config(voc_dir, 8, 3), workdir)
    return run_log.read(workdir)


def test_three_workers_write_the_log_of_one_at_the_same_lag(voc_dir, lag3, tmp_path, monkeypatch):  # noqa: F811
    _threads(monkeypatch, 3)
    run(_config(voc_dir, 8, 3), tmp_path)
    assert strip_times(run_log.read(tmp_path)) == strip_times(lag3)
    # ... and the log carries information: stage-2 rewards (which depend on the candidate's own batches),
    # early stops, and a lag that matters
    assert sum(r["stage"] == 2 for r in lag3) >= 2 and any(r["stopped_early"] for r in lag3)
    monkeypatch.undo()
    run(_config(voc_dir, 8, 0), tmp_path / "lag0")
    assert [r["genotype"] for r in run_log.read(tmp_path / "lag0")] != [r["genotype"] for r in lag3]


def test_early_stop_decides_against_the_rewards_lag_candidates_back(lag3):
    """Candidate i's threshold is the running mean after the stage-1 rewards of 0..i-1-L and its own."""
    state = early_stop.init(9314, 0.35, 0.9)
    committed = [state]
    for i, r in enumerate(lag3):
        state, _, _ = early_stop.step(state, r["stage1_reward"] or 0.0, i)
        committed.append(state)
    for i, r in enumerate(lag3):
        snapshot = committed[max(0, i - 3)]
        _, go_on, info = early_stop.step(snapshot, r["stage1_reward"], i)
        assert r["early_stop_threshold"] == pytest.approx(info["threshold"], abs=1e-12), i
        assert r["stopped_early"] == (not go_on), i


def test_resume_of_a_threaded_run_equals_the_uninterrupted_one(voc_dir, lag3, tmp_path, monkeypatch):  # noqa: F811
    """Stopping after 3 (jobs 3..6 proposed, some trained and dropped) and resuming with another worker count."""
    _threads(monkeypatch, 2)
    run(_config(voc_dir, 3, 3), tmp_path)
    _threads(monkeypatch, 4)  # parallel.workers is a runtime key
    run(_config(voc_dir, 8, 3), tmp_path)
    assert strip_times(run_log.read(tmp_path)) == strip_times(lag3)


def test_jobs_and_outcomes_travel_as_json():
    es = early_stop.init(3)
    job = Job(5, tuple(range(20)), candidate_key(np.array([1, 2], np.uint32), 5), early_stop.to_json(es))
    assert Job.from_json(job.to_json()) == job
    assert job.key_data != candidate_key(np.array([1, 2], np.uint32), 6)
    outcome = Outcome(5, {"reward": 0.25, "failure": None}, {"threshold": 0.1, "stopped": False}, "cpu:1")
    assert Outcome.from_json(outcome.to_json()) == outcome


def test_stage2_streams_are_keyed_by_the_candidate_index():
    seeds = []
    make = streams.IndexedStreams(lambda seed: iter([seed]), seed=7)
    for index in (0, 1, 0):
        with streams.candidate(index):
            seeds.append(next(make()))
    assert seeds[0] == seeds[2] != seeds[1]
    with pytest.raises(streams.NoCandidateError):
        make()


def test_more_workers_than_devices_is_one_line(voc_dir, tmp_path):  # noqa: F811
    c = _config(voc_dir, 2, 0, workers=64)
    with pytest.raises(WorkersError, match="xla_force_host_platform_device_count"):
        run(c, tmp_path)
    assert not (tmp_path / run_log.FILENAME).exists()


def _command(workdir, data_dir, *flags):
    return [
        sys.executable,
        "-m",
        "tests.fake_candidate",
        "--config=configs/voc.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
        "--config.early_stop.maxval=0.35",
        "--config.log.progress=false",
        *flags,
    ]


@pytest.mark.slow
def test_kill_9_of_a_four_device_run_resumes_to_the_uninterrupted_log(voc_dir, tmp_path):  # noqa: F811
    """Four workers on four fake CPU devices, lag 4: SIGKILL mid-run, a torn line, resume; the log is the one
    a single worker writes without interruption."""
    n, flags = 10, ("--config.num_candidates=10", "--config.parallel.workers=4", "--config.parallel.lag=4")
    reference = tmp_path / "reference"
    run(_config(voc_dir, n, 4), reference)
    workdir = tmp_path / "killed"
    env = dict(os.environ, FDN_FAKE_SLEEP="0.3", XLA_FLAGS=FOUR_DEVICES)
    cmd = _command(workdir, voc_dir, *flags)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = workdir / run_log.FILENAME
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = len(log.read_bytes().splitlines())
    with open(log, "ab") as f:  # a torn line, as a kill during the write would leave
        f.write(b'{"index": 99, "rew')
    assert killed < n
    env["FDN_FAKE_SLEEP"] = "0"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in log.read_bytes().splitlines()]  # every line whole
    assert strip_times(records) == strip_times(run_log.read(reference))


@pytest.mark.slow
def test_demo_tiny_on_four_fake_devices_writes_a_valid_log(tmp_path):
    """The issue's command, real trainer: one trainer per fake device, inputs committed there, lag 4.

    Per-genotype programs and stage 1 only, to keep the compiles (one per device and program on CPU) within
    minutes; a random encoder may well score 0, so only failures are checked.
    """
    cmd = [
        sys.executable,
        "-m",
        "fdn.search",
        "--config=configs/demo.py:tiny",
        f"--workdir={tmp_path}",
        "--config.parallel.workers=4",
        "--config.parallel.lag=4",
        "--config.num_candidates=4",
        "--config.candidate.programs=per_genotype",
        "--config.max_stage=1",
        "--config.log.progress=false",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
    ]
    env = dict(os.environ, XLA_FLAGS=FOUR_DEVICES)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 worker(s), lag 4" in done.stdout
    records = run_log.read(tmp_path)
    assert [r["index"] for r in records] == list(range(4))
    assert all(r["failure"] is None and 0.0 <= r["reward"] <= 1.0 for r in records), records


def test_bench_scale_measures_after_the_warm_up_and_prints_its_table():
    from fdn.bench import scale

    def records(workers, step):  # one commit every ``step`` s after the warm-up, 1 s of work each
        out = [{"time": 100.0 + i, "seconds": {"total": 50.0, "agent": 0.0}, "stage": 1} for i in range(workers)]
        last = out[-1]["time"]
        out += [{"time": last + step * (i + 1), "seconds": {"total": 1.1, "agent": 0.1}, "stage": 2} for i in range(4)]
        return out

    one, two = scale.measure(records(1, 1.0), 1, 2), scale.measure(records(2, 0.5), 2, 2)
    assert one["per_hour"] == pytest.approx(3600.0) and one["idle"] == pytest.approx(0.0)
    assert two["per_hour"] == pytest.approx(7200.0) and two["idle"] == pytest.approx(0.0)
    text = scale.table([one, two])
    assert "| 2 | 2 | 4 | 2.0 | 7200 | 2.00x | 0% | 4 |" in text
    assert scale.measure(records(2, 1.0), 2, 2)["idle"] == pytest.approx(0.5)
    # A worker whose first candidates stopped after stage 1 compiles stage 2 later: that candidate (index 3
    # here) and everything before it are warm-up, not throughput.
    late = records(2, 1.0)
    late[3]["seconds"]["compile"] = 40.0
    after = scale.measure(late, 2, 2)
    assert after["candidates"] == 2 and after["seconds"] == pytest.approx(2.0)


def test_closing_the_pool_ends_idle_threads_and_never_waits_for_a_running_job(monkeypatch):
    """A finished search leaves no worker thread running into the interpreter's exit (one inside XLA aborts the
    process there); an interrupted one does not wait for the job in flight."""
    import threading

    from fdn.search.parallel import local

    started, release = threading.Event(), threading.Event()

    def blocking_job(trainer, job, config, worker):
        started.set()
        release.wait(30)

    monkeypatch.setattr(local, "run_job", blocking_job)
    idle = local.LocalWorkers([object(), object()], config=None)
    idle.close()
    assert not any(t.is_alive() for t in idle._threads)

    busy = local.LocalWorkers([object()], config=None)
    busy.submit("a job")
    assert started.wait(10)  # the thread is inside the job
    start = time.perf_counter()
    busy.close()
    assert time.perf_counter() - start < 1.0 and busy._threads[0].is_alive()
    release.set()
    busy._threads[0].join(5)


def test_a_job_that_waits_for_its_look_ahead_compile_counts_the_wait_as_its_compile(monkeypatch):
    """With ``compile_ahead`` the next job's programs compile while the current one trains; when the compile
    outlasts it, the next job waits, and its logged seconds say so (they once showed ~0 s of compile)."""
    from fdn.search.parallel import local

    class SlowCompiles:
        def precompile(self, genotype):
            time.sleep(0.5)

    def quick_job(trainer, job, config, worker):
        return Outcome(job.index, {"seconds": {"compile": 0.01, "worker_total": 0.02}}, {}, worker)

    monkeypatch.setattr(local, "run_job", quick_job)
    workers = local.InlineWorkers(SlowCompiles(), config=None, precompile_next=True)
    for index in range(2):
        workers.submit(Job(index, (0,) * 20, (0, index), {}))
    first, second = workers.next_outcome(), workers.next_outcome()
    assert first.fields["seconds"] == {"compile": 0.01, "worker_total": 0.02}  # nothing compiled ahead of it
    assert 0.4 < second.fields["seconds"]["compile"] < 5 and second.fields["seconds"]["worker_total"] > 0.4
    workers.close()

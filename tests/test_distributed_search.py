"""A search across 2 localhost processes (``python -m tests.fake_candidate --distributed ...`` = ``fdn.search``
with the stand-in trainer): it runs to the end and logs what one process with the same ``parallel.lag`` logs;
killing the worker process mid-run stops process 0 within the heartbeat timeout with one line naming it, and
the same command resumes to that same log."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from fdn.search import run_log
from tests import test_search
from tests.test_distributed import free_port, start
from tests.test_search import XLA_CACHE, strip_times, tiny_config

voc_dir = test_search.voc_dir  # the miniature VOC tree fixture
LAG = 2
TIMEOUT_S = 5


def _command(workdir, voc_dir, n, port, k):
    return [
        "-m",
        "tests.fake_candidate",
        "--config=configs/voc.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={voc_dir}",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
        f"--config.num_candidates={n}",
        f"--config.parallel.lag={LAG}",
        "--distributed",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={k}",
        f"--heartbeat_timeout_s={TIMEOUT_S}",
    ]


def _start_both(workdir, voc_dir, n, sleeps, worker_out=None):
    """Process 0 and process 1, whose fake trainers sleep ``sleeps[k]`` s per stage (process 1 joins after its
    set-up, which follows process 0's: a slower process 0 leaves it work); process 1's stdout goes to the open
    file ``worker_out`` if given."""
    port = free_port()
    outs = [subprocess.PIPE, worker_out or subprocess.PIPE]
    return [start(_command(workdir, voc_dir, n, port, k), outs[k], FDN_FAKE_SLEEP=str(sleeps[k])) for k in (0, 1)]


def _finish(procs, timeout=240):
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout))
        except BaseException:
            for q in procs:
                q.kill()
            raise
    return outs


def _records(workdir):
    return strip_times(run_log.read(workdir))


@pytest.fixture(scope="module")
def one_process(voc_dir, tmp_path_factory):
    """The log of the same search in one process (the first ``n`` lines are an ``n``-candidate search's)."""
    config = tiny_config(voc_dir, n=10)
    config.parallel.lag = LAG
    workdir = tmp_path_factory.mktemp("one")
    test_search.run(config, workdir)
    return _records(workdir)


@pytest.mark.slow
def test_two_processes_search_to_the_end_as_one_process_does(voc_dir, tmp_path, one_process):
    n = 6
    procs = _start_both(tmp_path / "two", voc_dir, n, sleeps=(0.5, 0.05))
    (out0, err0), (out1, err1) = _finish(procs)
    assert procs[0].returncode == 0, err0[-3000:]
    assert procs[1].returncode == 0, err1[-3000:]
    assert f"fdn.search: {n} candidates in" in out0
    trained_by_1 = int(out1.split("process 1: ")[-1].split(" candidates trained here")[0])
    assert 0 < trained_by_1 < n, out1  # both processes trained candidates
    two = _records(tmp_path / "two")
    assert [r["index"] for r in two] == list(range(n))
    assert two == one_process[:n]


@pytest.mark.slow
def test_a_killed_worker_process_stops_the_search_with_one_line_and_it_resumes(voc_dir, tmp_path, one_process):
    n = 10
    workdir = tmp_path / "killed"
    worker_out = tmp_path / "process1.out"
    with open(worker_out, "w") as f:
        procs = _start_both(workdir, voc_dir, n, sleeps=(0.5, 0.5), worker_out=f)
    log = workdir / run_log.FILENAME
    deadline = time.time() + 240
    while time.time() < deadline and procs[0].poll() is None:  # kill it while it trains (it joins late)
        if "worker(s) ready" in worker_out.read_text() and log.exists() and log.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    assert procs[0].poll() is None and procs[1].poll() is None, "the search ended before the kill"
    killed = time.monotonic()
    procs[1].send_signal(signal.SIGKILL)
    (_, err0), _ = _finish(procs, timeout=60)
    took = time.monotonic() - killed
    lines = [ln for ln in err0.splitlines() if ln.strip()]
    assert procs[0].returncode == 2, err0[-3000:]
    assert lines[-1].startswith(f"fdn.search: error: lost process 1 of 2 (no heartbeat for {TIMEOUT_S} s"), err0
    assert "resume by running the same command on every host" in lines[-1]
    assert "Traceback" not in err0 and "Terminating process because" not in err0, err0[-3000:]
    assert took < TIMEOUT_S + 5, took
    done = len(run_log.read(workdir))
    assert 2 <= done < n

    procs = _start_both(workdir, voc_dir, n, sleeps=(0, 0))  # the same command, on both "hosts"
    (out0, err0), (_, err1) = _finish(procs)
    assert procs[0].returncode == 0 and procs[1].returncode == 0, err0[-3000:] + err1[-3000:]
    assert f"resuming {workdir} after candidate {done - 1}" in out0
    assert _records(workdir) == one_process[:n]
    print(f"process 0 stopped {took:.1f} s after the kill (timeout {TIMEOUT_S} s), {done} candidates kept")

"""fdn.distributed on 2 real localhost processes (coordinator on 127.0.0.1, a free port): the mailbox's every
call, the version pin of the private client it wraps, and the watchdog's bounded-time stop with one line naming
the lost process. The searches across processes are in tests/test_distributed_search.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fdn.distributed import mailbox
from fdn.distributed import runtime as runtime_lib

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **extra)


def start(argv, stdout=subprocess.PIPE, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env=env(**extra), stdout=stdout, stderr=subprocess.PIPE, text=True
    )


def test_the_client_is_pinned_to_the_installed_jax():
    mailbox.check_version()  # the installed jax (0.10.x): every wrapped method has the signature read from it
    with pytest.raises(mailbox.UnsupportedJax, match=r"checked for jax 0\.10\.x only; this is jax 0\.8\.1"):
        mailbox.check_version("0.8.1")

    class Drifted:  # get_live_nodes as it was in 0.8.0, the others gone
        def get_live_nodes(self, process_ids):
            """get_live_nodes(self, node_ids: list[int]) -> list[int]"""

    with pytest.raises(mailbox.UnsupportedJax, match="key_value_set"):
        mailbox.check_version(client_type=Drifted)


def test_jax_heartbeat_comes_after_ours():
    for t in (1, 5, 60, 600):
        assert runtime_lib.jax_heartbeat_s(t) > t + 10  # our line, then our exit, before JAX's fatal kill


def test_mailbox_between_two_processes():
    port = free_port()
    procs = [start(["-m", "tests.distributed_probe", "mailbox", str(port), str(k)]) for k in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "mailbox ok" in out, err[-3000:]


def test_one_process_saves_a_tree_the_other_reads_it(tmp_path):
    """save_tree on process 0 alone (a search's teacher, a training's export) must not wait for the others."""
    port = free_port()
    procs = [start(["-m", "tests.distributed_probe", "tree", str(port), str(k), str(tmp_path)]) for k in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "tree ok" in out, err[-3000:]


def test_a_killed_process_stops_the_other_within_the_timeout_with_one_line():
    """kill -9 process 1: process 0 exits 2 within timeout + grace, naming process 1, before JAX's own kill."""
    timeout_s = 4
    port = free_port()
    procs = [
        start(["-m", "tests.distributed_probe", "watch", str(port), str(k)], FDN_PROBE_TIMEOUT_S=str(timeout_s))
        for k in (0, 1)
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "up", p.stderr.read()[-3000:] if p.poll() is not None else ""
        time.sleep(1.0)
        killed = time.monotonic()
        procs[1].send_signal(signal.SIGKILL)
        _, err = procs[0].communicate(timeout=60)
        took = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert procs[0].returncode == 2, err[-3000:]
    assert lines[-1].startswith("probe: error: lost process 1 of 2 (no heartbeat for 4 s"), err[-3000:]
    assert "resume by running the same command on every host" in lines[-1]
    assert "Terminating process because the JAX distributed service" not in err  # ours came first
    assert timeout_s - 1 < took < timeout_s + 3 < runtime_lib.jax_heartbeat_s(timeout_s), took
    print(f"process 0 stopped {took:.1f} s after process 1 was killed (timeout {timeout_s} s)")


class _Flags:
    """The attributes `fdn.distributed.flags.options` reads, with ``given`` marked as set on the command line."""

    def __init__(self, **given):
        defaults = dict(
            distributed=False,
            coordinator_address=None,
            num_processes=None,
            process_id=None,
            local_device_ids=None,
            heartbeat_timeout_s=60,
            init_timeout_s=300,
        )
        self.__dict__.update(defaults, **given)
        self._given = set(given)

    def __getitem__(self, name):
        return type("Flag", (), {"present": name in self._given})()


def test_flags_say_what_is_missing_or_malformed():
    from fdn.distributed import flags as distributed_flags

    assert distributed_flags.options(_Flags()) is None
    with pytest.raises(runtime_lib.DistributedError, match="--process_id without --distributed"):
        distributed_flags.options(_Flags(process_id=1))
    with pytest.raises(runtime_lib.DistributedError, match="--local_device_ids=0,x: give device numbers"):
        distributed_flags.options(_Flags(distributed=True, local_device_ids=["0", "x"]))
    got = distributed_flags.options(
        _Flags(distributed=True, coordinator_address="h:1", num_processes=2, process_id=1, local_device_ids=["2"])
    )
    assert got == runtime_lib.Options("h:1", 2, 1, (2,), 60, 300)


def test_no_coordinator_to_detect_is_one_line_and_exit_2(tmp_path):
    """--distributed outside any scheduler and without coordinator flags: one error line (after the notice)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fdn.search", "--config=configs/voc.py:tiny", f"--workdir={tmp_path}", "--distributed"],
        cwd=ROOT,
        env={k: v for k, v in env().items() if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "TPU_"))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("fdn.search:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(ours) == 2 and ours[0].startswith("fdn.search: connecting to the distributed runtime"), ours
    assert ours[1].startswith("fdn.search: error: cannot start the distributed runtime"), ours
    assert "--coordinator_address=HOST:PORT" in ours[1]

"""``python -m tests.distributed_probe MODE PORT PROCESS_ID [ARG]``: one of 2 localhost processes for the tests of
`fdn.distributed` (tests/test_distributed.py).

* ``mailbox``: every mailbox call between the two, then prints ``mailbox ok``;
* ``tree DIR``: a pytree saved by process 0 alone and read by process 1, then ``tree ok``;
* ``watch``: start a session (heartbeat timeout ``FDN_PROBE_TIMEOUT_S``) and idle until the other process is
  lost, as a search's main thread would: poll the watchdog, exit through its one line.
"""

from __future__ import annotations

import os
import sys
import time


def _session(port: int, pid: int):
    from fdn.distributed import runtime, session

    options = runtime.Options(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=pid,
        local_device_ids=(0,),
        heartbeat_timeout_s=int(os.environ.get("FDN_PROBE_TIMEOUT_S", "60")),
        init_timeout_s=60,
    )
    return session.start(options, command="probe", consequence="the probe stopped")


def mailbox(port: int, pid: int) -> None:
    s = _session(port, pid)
    box, other = s.mailbox, 1 - pid

    def check(what, got, expected):  # each step named on stderr, so a failure says which call misbehaved
        print(f"probe {pid}: {what} -> {got!r}", file=sys.stderr, flush=True)
        assert got == expected, f"{what}: {got!r} != {expected!r}"

    box.set(f"greeting/{pid}", f"from {pid}")
    check("get the other's greeting", box.get(f"greeting/{other}", timeout_s=30), f"from {other}")
    check("get a key never set (timeout)", box.get("never/set", timeout_s=0.2), None)
    check("try_get a key never set", box.try_get("never/set"), None)
    check("barrier both-greeted", box.barrier("both-greeted", timeout_s=30), True)
    check("dir_get greeting", box.dir_get("greeting"), {"greeting/0": "from 0", "greeting/1": "from 1"})
    check("live_nodes", box.live_nodes([0, 1]), [0, 1])
    check("barrier both-read", box.barrier("both-read", timeout_s=30), True)
    if pid == 0:
        box.delete("greeting/1")
        box.set("deleted", "1")
    else:
        check("get deleted", box.get("deleted", timeout_s=30), "1")
        check("try_get a deleted key", box.try_get("greeting/1"), None)
        check("try_get a kept key", box.try_get("greeting/0"), "from 0")
    box.set(f"counter/{pid}", "1", overwrite=True)  # one key per process: the two must not race
    box.set(f"counter/{pid}", "2", overwrite=True)
    check("try_get an overwritten key", box.try_get(f"counter/{pid}"), "2")
    check("barrier end", box.barrier("end", timeout_s=30), True)
    s.finish()
    print("mailbox ok", flush=True)


def tree(port: int, pid: int, directory: str) -> None:
    """Process 0 writes a pytree (as a search's teacher or a training's export), process 1 then reads it."""
    import numpy as np

    from fdn import checkpointing

    s = _session(port, pid)
    path = os.path.join(directory, "tree")
    if pid == 0:
        checkpointing.save_tree(path, {"w": np.arange(6, dtype=np.float32)})
    assert s.mailbox.barrier("written", timeout_s=60)
    if pid == 1:
        got = checkpointing.restore_tree(path, {"w": np.zeros(6, np.float32)})
        assert np.array_equal(np.asarray(got["w"]), np.arange(6)), got
    assert s.mailbox.barrier("read", timeout_s=60)
    s.finish()
    print("tree ok", flush=True)


def watch(port: int, pid: int) -> None:
    from fdn.distributed import runtime
    from fdn.distributed.watchdog import ProcessLost

    s = _session(port, pid)
    s.mailbox.set(f"up/{pid}", "1")
    print("up", flush=True)
    try:
        while True:
            s.watchdog.check()
            time.sleep(0.05)
    except ProcessLost as err:
        runtime.exit_now(f"probe: error: {err}")


if __name__ == "__main__":
    mode, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    {"mailbox": mailbox, "watch": watch, "tree": tree}[mode](port, pid, *sys.argv[4:])

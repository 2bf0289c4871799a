"""Run a command as a child process and time what it prints: every output line stamped with the seconds since
launch, an optional stop condition polled while it runs (then SIGTERM, which fdn's commands handle as Ctrl-C:
they finish what they are writing and exit), and the CPU-seconds it used. ``fdn.bench coldstart`` runs whole
``fdn.search`` commands this way, because a cold start is what a fresh process does: imports, data, compiles and
all.

Why a child and not a call: the process under test must start with nothing loaded or compiled, and its CPU
time must be its own (``/proc/PID/stat`` when it is stopped, so its shutdown is not counted; else
``resource.getrusage(RUSAGE_CHILDREN)`` before and after). The machine's busy cores over the same span
(``/proc/stat``, Linux only) tell whether anything else ran beside it.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

# After SIGTERM a search finishes the record or checkpoint it is writing (fdn.interrupts); past this it is killed.
# SIGTERM rather than SIGINT: a shell starts background jobs (`cmd &`, `nohup`) with SIGINT ignored, and a child
# inherits that, so SIGINT would not stop a bench run in the background.
STOP_GRACE_SECONDS = 120.0
# After Ctrl-C in the bench, the child (same terminal) has its own SIGINT: it gets this long to stop on that
# before it is sent SIGTERM (a second signal could cut its shutdown short).
CTRL_C_WAIT_SECONDS = 10.0


@dataclasses.dataclass
class ChildRun:
    """What one run printed and cost. ``stopped_at``: seconds from launch to when ``stop_when`` first held
    (None: it never did); ``timed_out``: stopped because the time limit passed. ``cpu_seconds`` and
    ``machine_busy_cores`` cover launch to exit, or to the stop where there was one (not the shutdown after it)."""

    command: list[str]
    started: float  # the launch's wall-clock time (time.time()), to place the child's own timestamps
    lines: list[tuple[float, str]]
    wall_seconds: float
    returncode: int
    cpu_seconds: float
    stopped_at: float | None = None
    timed_out: bool = False
    machine_busy_cores: float | None = None

    def first(self, text: str) -> float | None:
        """Seconds from launch to the first line containing ``text``."""
        return next((t for t, line in self.lines if text in line), None)

    def last(self, text: str) -> float | None:
        """Seconds from launch to the last line containing ``text``."""
        return next((t for t, line in reversed(self.lines) if text in line), None)


def _proc_stat() -> tuple[int, int] | None:
    """(all jiffies, idle + iowait jiffies) of the whole machine, or None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values), values[3] + values[4]


def busy_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Mean number of busy cores between two `_proc_stat` samples (None without /proc/stat)."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    return (os.cpu_count() or 1) * (1.0 - idle / total)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float | None:
    """CPU-seconds (user + system, all threads and waited-for children) of a running process, or None
    without /proc: what it has used up to now, before it is stopped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks


# A progress bar's updates are echoed at most this often (all are kept in the run's lines).
PROGRESS_ECHO_SECONDS = 15.0


def split_output(buffer: bytes) -> tuple[list[tuple[str, bool]], bytes]:
    """``buffer`` cut into finished pieces and the unfinished rest: (text, is a progress update) per piece, where
    a piece ends at a newline, or at a carriage return (a progress bar redrawing its line; ``\\r\\n`` is a
    newline). A carriage return at the very end waits for the next byte, which may make it a newline."""
    out = []
    while True:
        cuts = [k for k in (buffer.find(b"\r"), buffer.find(b"\n")) if k >= 0]
        if not cuts:
            return out, buffer
        i = min(cuts)
        if buffer[i : i + 1] == b"\r" and i + 1 == len(buffer):
            return out, buffer
        newline = buffer[i : i + 1] == b"\n" or buffer[i + 1 : i + 2] == b"\n"
        out.append((buffer[:i].decode("utf-8", "replace"), not newline))
        buffer = buffer[i + (2 if buffer[i : i + 2] == b"\r\n" else 1) :]


def _read_lines(stream, start: float, lines: list, echo: Callable[[float, str], None] | None) -> None:
    """Collects ``stream``'s output in pieces with their times, reading whatever has come (not line by line: a
    progress bar redraws its line without a newline for minutes). Every non-blank piece is kept; ``echo`` sees
    each line and a progress update every `PROGRESS_ECHO_SECONDS`."""
    last_progress = -PROGRESS_ECHO_SECONDS
    pending = b""
    fd = stream.fileno()
    while True:
        chunk = os.read(fd, 1 << 16)
        pending += chunk
        pieces, pending = split_output(pending)
        if not chunk and pending:  # the end: what is left is a last piece
            pieces, pending = [*pieces, (pending.rstrip(b"\r").decode("utf-8", "replace"), False)], b""
        now = time.perf_counter() - start
        for text, progress in pieces:
            if not text.strip():
                continue
            lines.append((now, text))
            if echo is not None and (not progress or now - last_progress >= PROGRESS_ECHO_SECONDS):
                last_progress = now if progress else last_progress
                echo(now, text)
        if not chunk:
            return


def _stop(child: subprocess.Popen, wait_first: float = 0.0) -> None:
    """Stops a running child: after ``wait_first`` seconds of letting it end on its own, SIGTERM, then SIGKILL if it
    has not exited after `STOP_GRACE_SECONDS`."""
    for sig, seconds in ((None, wait_first), (signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
        if child.poll() is not None:
            return
        if sig is not None:
            child.send_signal(sig)
        try:
            child.wait(seconds)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    command: Sequence[str],
    *,
    env: dict | None = None,
    stop_when: Callable[[], bool] | None = None,
    timeout: float | None = None,
    echo: Callable[[float, str], None] | None = None,
    poll_seconds: float = 0.1,
) -> ChildRun:
    """Runs ``command`` (stdout and stderr together) until it exits, ``stop_when()`` holds or ``timeout``
    seconds pass; in the last two cases it gets SIGTERM, then SIGKILL after `STOP_GRACE_SECONDS`. ``echo(t,
    line)`` sees each line as it comes (a progress bar's updates only now and then, `_read_lines`)."""
    command = list(command)
    cpu0, stat0 = _children_cpu(), _proc_stat()
    started, start = time.time(), time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=_read_lines, args=(child.stdout, start, lines, echo), daemon=True)
    reader.start()
    stopped_at, timed_out = None, False
    try:
        while child.poll() is None:
            now = time.perf_counter() - start
            if stop_when is not None and stop_when():
                stopped_at = now
                break
            if timeout is not None and now > timeout:
                timed_out = True
                break
            time.sleep(poll_seconds)
    except BaseException:  # Ctrl-C here (the child saw it too): let it finish its writes before we go on
        _stop(child, wait_first=CTRL_C_WAIT_SECONDS)
        raise
    stat1 = _proc_stat()
    cpu_at_stop = _process_cpu(child.pid) if child.poll() is None else None
    _stop(child)
    wall = time.perf_counter() - start
    reader.join(5.0)
    return ChildRun(
        command=command,
        started=started,
        lines=lines,
        wall_seconds=wall,
        returncode=child.returncode,
        cpu_seconds=cpu_at_stop if cpu_at_stop is not None else _children_cpu() - cpu0,
        stopped_at=stopped_at,
        timed_out=timed_out,
        machine_busy_cores=busy_cores(stat0, stat1),
    )

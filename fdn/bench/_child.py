"""Run a command as a child process and time what it prints: every output line stamped with the seconds since
launch, an optional stop condition polled while it runs (then SIGINT, so it stops as a user's Ctrl-C would), and
the CPU-seconds it used. ``fdn.bench coldstart`` runs whole ``fdn.search`` commands this way, because a cold start
is what a fresh process does: imports, data, compiles and all.

Why a child and not a call: the process under test must start with nothing loaded or compiled, and its CPU
time must be its own (``resource.getrusage(RUSAGE_CHILDREN)`` before and after). The machine's busy cores over
the same span (``/proc/stat``, Linux only) tell whether anything else ran beside it.
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

# After SIGINT a search finishes the record or checkpoint it is writing (fdn.interrupts); past this it is killed.
STOP_GRACE_SECONDS = 120.0


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


def _read_lines(stream, start: float, lines: list, echo: Callable[[float, str], None] | None) -> None:
    """Collects ``stream``'s lines with their times; a progress bar's carriage-return updates count as lines
    (the last one shown is what a terminal would show), so a bar never hides a timestamp."""
    for raw in iter(stream.readline, b""):
        now = time.perf_counter() - start
        decoded = raw.decode("utf-8", "replace").replace("\r\n", "\n")
        for part in decoded.split("\r"):
            text = part.rstrip("\n")
            if text.strip():
                lines.append((now, text))
                if echo is not None and "\r" not in decoded:
                    echo(now, text)


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
    seconds pass; in the last two cases it gets SIGINT, then SIGKILL after `STOP_GRACE_SECONDS`. ``echo(t,
    line)`` sees each finished line as it comes (progress-bar updates are kept but not echoed)."""
    command = list(command)
    cpu0, stat0 = _children_cpu(), _proc_stat()
    started, start = time.time(), time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=_read_lines, args=(child.stdout, start, lines, echo), daemon=True)
    reader.start()
    stopped_at, timed_out = None, False
    while child.poll() is None:
        now = time.perf_counter() - start
        if stop_when is not None and stop_when():
            stopped_at = now
            break
        if timeout is not None and now > timeout:
            timed_out = True
            break
        time.sleep(poll_seconds)
    stat1 = _proc_stat()
    cpu_at_stop = _process_cpu(child.pid) if child.poll() is None else None
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
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

"""Bounded-time detection of a lost process: heartbeat keys in the mailbox, and one line naming who was lost.

Each process refreshes ``hb/<its id>`` (a counter) several times per timeout from a thread; the watcher
(process 0 watches every other process, the others watch process 0) notes when each watched counter last
changed, by its own clock, so hosts' clocks never need to agree. A counter unchanged for ``timeout_s``
seconds marks its process lost: the main thread, which polls the mailbox anyway, meets `ProcessLost` at its
next `check` and leaves through its ordinary error path; if it is busy elsewhere (a set-up, a long call),
the watcher itself prints the line and ends the process after ``grace_s`` (`fdn.distributed.runtime.exit_now`).
Either way the run stops within ``timeout_s + grace_s`` plus a poll, before JAX's own heartbeat kill.
"""

from __future__ import annotations

import threading
import time

from fdn.distributed.mailbox import Mailbox, MailboxError
from fdn.distributed.runtime import exit_now
from fdn.errors import UserError

HEARTBEATS = "hb"  # the mailbox directory of heartbeat counters


class ProcessLost(UserError, RuntimeError):
    """A watched process stopped refreshing its heartbeat: it died, hangs, or lost its network."""

    def __init__(self, message: str, process_id: int):
        super().__init__(message)
        self.process_id = process_id


def lost_message(process_id: int, num_processes: int, timeout_s: float, consequence: str) -> str:
    return (
        f"lost process {process_id} of {num_processes} (no heartbeat for {timeout_s:g} s: it died, hangs or lost "
        f"its network); {consequence}; resume by running the same command on every host"
    )


class Watchdog:
    """Beats for ``process_id`` and watches ``watched``; `check` raises `ProcessLost` once one of them is lost.

    ``consequence`` completes the message ("the search stopped; its checkpoint keeps ..."); ``command`` prefixes
    the line printed when the main thread does not react within ``grace_s``.
    """

    def __init__(
        self,
        mailbox: Mailbox,
        process_id: int,
        num_processes: int,
        watched,
        timeout_s: float,
        *,
        consequence: str = "the run stopped",
        command: str = "fdn",
        grace_s: float | None = None,
    ):
        self.mailbox, self.process_id, self.num_processes = mailbox, process_id, num_processes
        self.watched, self.timeout_s = sorted(watched), float(timeout_s)
        self.consequence, self.command = consequence, command
        self.grace_s = min(10.0, self.timeout_s) if grace_s is None else float(grace_s)
        self.interval_s = min(1.0, self.timeout_s / 5)
        self._stop = threading.Event()
        self._lost: ProcessLost | None = None
        self._threads = [
            threading.Thread(target=self._beat, name="fdn-heartbeat", daemon=True),
            threading.Thread(target=self._watch, name="fdn-watchdog", daemon=True),
        ]

    def start(self) -> Watchdog:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stops beating and watching (a process that ends normally; the others see its ``done`` first)."""
        self._stop.set()

    @property
    def lost(self) -> ProcessLost | None:
        return self._lost

    def check(self) -> None:
        if self._lost is not None:
            raise self._lost

    def _beat(self) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            try:
                self.mailbox.set(f"{HEARTBEATS}/{self.process_id}", str(count), overwrite=True)
            except MailboxError:
                pass  # the coordinator is unreachable: the watcher (or JAX) reports it
            self._stop.wait(self.interval_s)

    def _watch(self) -> None:
        last = {p: (None, time.monotonic()) for p in self.watched}
        while not self._stop.wait(self.interval_s / 2):
            try:
                beats = self.mailbox.dir_get(HEARTBEATS)
            except MailboxError:
                beats = {}
            now = time.monotonic()
            for p in self.watched:
                value = beats.get(f"{HEARTBEATS}/{p}")
                if value is not None and value != last[p][0]:
                    last[p] = (value, now)
                elif now - last[p][1] > self.timeout_s:
                    self._declare_lost(p)
                    return

    def _declare_lost(self, p: int) -> None:
        message = lost_message(p, self.num_processes, self.timeout_s, self.consequence)
        self._lost = ProcessLost(message, p)
        if not self._stop.wait(self.grace_s):  # the main thread did not end the process in time
            exit_now(f"{self.command}: error: {message}")

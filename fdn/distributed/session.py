"""This process's place in a multi-process run: its index, the mailbox and the watchdog, started together.

A command calls `start` first thing (before any device is used); code further down asks `current()` (None in a
single-process run, which then behaves exactly as before).
"""

from __future__ import annotations

import dataclasses
import time

from fdn.distributed import runtime
from fdn.distributed.mailbox import Mailbox
from fdn.distributed.watchdog import Watchdog

_CURRENT: Session | None = None
DONE = "done"  # the mailbox key by which process 0 ends the run
BYE = "bye"  # the directory where each other process says it leaves


@dataclasses.dataclass
class Session:
    process_id: int
    num_processes: int
    mailbox: Mailbox
    watchdog: Watchdog
    _finished: bool = False

    @property
    def is_coordinator(self) -> bool:
        """Process 0: it hosts JAX's coordination service and owns the agent, log, checkpoints and report."""
        return self.process_id == 0

    def finish(self, reason: str = "finished") -> None:
        """Ends this process's part of the run; idempotent.

        Process 0 posts ``done`` (``reason``) and waits, still watching, until every other process has said
        ``bye``: a process lost at that point would otherwise hang JAX's shutdown barrier until JAX's own
        heartbeat killed us without a word, so it ends here with the watchdog's line instead. The others say
        ``bye`` and stop watching.
        """
        if self._finished:
            return
        self._finished = True
        if not self.is_coordinator:
            self.mailbox.set(f"{BYE}/{self.process_id}", reason, overwrite=True)
            self.watchdog.stop()
            return
        if self.mailbox.try_get(DONE) is None:
            self.mailbox.set(DONE, reason)
        others = {f"{BYE}/{p}" for p in range(self.num_processes) if p != self.process_id}
        while not others <= set(self.mailbox.dir_get(BYE)):
            if self.watchdog.lost is not None:
                runtime.exit_now(f"{self.watchdog.command}: error: {self.watchdog.lost} (the run had ended: {reason})")
            time.sleep(0.05)
        self.watchdog.stop()


def start(options: runtime.Options, *, command: str, consequence: str) -> Session:
    """Starts ``jax.distributed`` (`fdn.distributed.runtime.initialize`), the mailbox and the heartbeats;
    process 0 watches every other process, the others watch process 0."""
    global _CURRENT
    import jax

    runtime.initialize(options, command)
    pid, n = jax.process_index(), jax.process_count()
    mailbox = Mailbox()
    watched = [p for p in range(n) if p != pid] if pid == 0 else [0]
    dog = Watchdog(
        mailbox, pid, n, watched, options.heartbeat_timeout_s, consequence=consequence, command=command
    ).start()
    _CURRENT = Session(pid, n, mailbox, dog)
    return _CURRENT


def current() -> Session | None:
    return _CURRENT

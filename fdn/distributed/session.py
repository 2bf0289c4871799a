"""This process's place in a multi-process run: its index, the mailbox and the watchdog, started together.

A command calls `start` first thing (before any device is used); code further down asks `current()` (None in a
single-process run, which then behaves exactly as before).
"""

from __future__ import annotations

import dataclasses

from fdn.distributed import runtime
from fdn.distributed.mailbox import Mailbox
from fdn.distributed.watchdog import Watchdog

_CURRENT: Session | None = None
DONE = "done"  # the mailbox key by which process 0 ends the run


@dataclasses.dataclass
class Session:
    process_id: int
    num_processes: int
    mailbox: Mailbox
    watchdog: Watchdog

    @property
    def is_coordinator(self) -> bool:
        """Process 0: it hosts JAX's coordination service and owns the agent, log, checkpoints and report."""
        return self.process_id == 0

    def finish(self, reason: str = "finished") -> None:
        """Stops this process's heartbeat watch; process 0 then tells the others the run is over (``reason``).
        Idempotent: the first reason stands. The others stop watching process 0 only after they read it."""
        self.watchdog.stop()
        if self.is_coordinator and self.mailbox.try_get(DONE) is None:
            self.mailbox.set(DONE, reason, overwrite=True)


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

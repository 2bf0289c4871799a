"""Stopping a long run cleanly: Ctrl-C and SIGTERM alike.

SLURM, Kubernetes and preemptible VMs send SIGTERM some seconds before they kill a job; a user presses Ctrl-C
(SIGINT). Either way a search or a training run should stop where it is, finish a log or checkpoint write
that has begun (so nothing already computed is lost), and exit with the shell's code for that signal
(130 for SIGINT, 143 for SIGTERM), so a scheduler sees an interrupted job, not a finished or crashed one.

`StopSignals` turns both signals into `Interrupted` (a ``KeyboardInterrupt``, so code that already handles
Ctrl-C handles SIGTERM too), raised at once except inside ``critical()``, where it waits until the block ends.
"""

from __future__ import annotations

import contextlib
import signal

HANDLED = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's exit status for a process ended by ``signum`` (128 + its number: 130, 143)."""
    return 128 + int(signum)


class Interrupted(KeyboardInterrupt):
    """Raised by `StopSignals` for SIGINT or SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


def exit_code_of(err: KeyboardInterrupt) -> int:
    """130 for a plain KeyboardInterrupt, the signal's code for an `Interrupted`."""
    return err.exit_code if isinstance(err, Interrupted) else exit_code(signal.SIGINT)


class StopSignals:
    """Context manager: SIGINT/SIGTERM raise `Interrupted` at once, except inside `critical()`.

    Outside the main thread signals cannot be handled; there it does nothing (the caller's handlers stay).
    The previous handlers are put back on exit.
    """

    def __init__(self):
        self.pending: int | None = None
        self.in_critical = False
        self._previous: dict[int, object] = {}

    def __enter__(self):
        for signum in HANDLED:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                break
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.in_critical:
            self.pending = signum
        else:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def critical(self):
        """A block a signal must not cut (a log line and its checkpoint): the signal is raised after it."""
        self.in_critical = True
        try:
            yield
        finally:
            self.in_critical = False
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)

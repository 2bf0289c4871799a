"""Which candidate a worker thread is training, so that the trainer's stage-2 stream is that candidate's own.

The trainer asks its ``train_batches()`` for a fresh iterator per stage 2 (`fdn.candidate.protocol`) without
saying for whom; `run_job` opens ``candidate(index)`` around the candidate, and an `IndexedStreams` factory
answers with the stream seeded from (seed, index). A thread-local, because each worker thread trains one
candidate at a time on its own trainer. Keying the batches by the index (not a shared iterator) is what
makes a candidate's reward independent of the worker count and of the order candidates finish in, and it
leaves nothing of the data stream to checkpoint.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np

_CURRENT = threading.local()


class NoCandidateError(RuntimeError):
    """A stage-2 stream was asked for outside `candidate` (a bug in the caller, not user input)."""


@contextlib.contextmanager
def candidate(index: int):
    previous = getattr(_CURRENT, "index", None)
    _CURRENT.index = int(index)
    try:
        yield
    finally:
        _CURRENT.index = previous


def current_index() -> int:
    index = getattr(_CURRENT, "index", None)
    if index is None:
        raise NoCandidateError("no candidate in scope: train candidates through fdn.search.parallel.run_job")
    return index


def stream_seed(seed: int, index: int) -> int:
    """A 31-bit seed for candidate ``index``'s stage-2 stream, distinct from the search's other streams."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index), 2]).generate_state(1)[0] >> 1)


class IndexedStreams:
    """``() -> iterator`` (the trainer's ``train_batches``) over ``make(stream_seed(seed, current index))``."""

    def __init__(self, make: Callable[[int], Iterator], seed: int):
        self.make, self.seed = make, int(seed)

    def __call__(self) -> Iterator:
        return self.make(stream_seed(self.seed, current_index()))

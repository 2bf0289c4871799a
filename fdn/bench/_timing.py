"""The one way fdn's benchmarks time a callable: warm-up calls (the first one timed: compile + run), then the
median of timed calls, each ending when its result is ready.

Every speed claim compares numbers from this helper, so they must all be measured the same way: what counts
as the first call, whether the warm-up is timed, that arguments are made outside the timed region, and that
JAX's asynchronous dispatch is waited for (``jax.block_until_ready``; other results, e.g. PyTorch's, are
synchronous already and pass through).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
    """``first``: seconds of the first warm-up call (None without warm-up); ``times``: the timed calls."""

    first: float | None
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_calls(fn: Callable, *, repeats: int, warmup: int = 1, args: Callable[[], tuple] = tuple) -> Timing:
    """Calls ``fn(*args())`` ``warmup`` times untimed except the first, then ``repeats`` times timed.

    ``args`` makes each call's arguments before its clock starts (fresh state for a step that donates it).
    """
    first = None
    for i in range(warmup):
        call_args = args()
        start = time.perf_counter()
        jax.block_until_ready(fn(*call_args))
        if i == 0:
            first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        call_args = args()
        start = time.perf_counter()
        jax.block_until_ready(fn(*call_args))
        times.append(time.perf_counter() - start)
    return Timing(first, tuple(times))

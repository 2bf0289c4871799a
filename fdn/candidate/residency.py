"""How many genotypes' compiled programs a trainer keeps loaded, and which it lets go first.

With per-genotype programs (`fdn.candidate.programs`) every new genotype compiles its own stage-1, evaluation
and stage-2 executables. Kept forever, they end a long search: XLA's CPU backend maps every kernel's code, constants
and data into memory pages of their own (three mappings per kernel, ~740 kernels in a stage-1 program), so one
genotype's programs hold ~2,000-6,500 memory mappings (measured on the demo's tiny sizes: stage 1 ~2,000, evaluation
~120, stage 2 ~4,000; the count follows the number of kernels, not the image sizes), and Linux stops a process at
65,530 of them (``vm.max_map_count``): a per-genotype search crashed inside LLVM ("Cannot allocate memory", then
"LLVM ERROR: Unable to allocate section memory") after ~10 genotypes. Dropping an executable returns its mappings
at once. On accelerators the kernels live on the device, but an unbounded table still grows with the search.

So a trainer keeps the programs of its `capacity` most recently used genotypes; a genotype met again after that
compiles again (a load from the persistent XLA cache where ``compilation_cache_dir`` is set). A compile still in
flight (the look-ahead of ``compile_ahead``) is never dropped, and a program in use stays alive while it runs (its
caller holds it). Universal programs have one key for the whole search and are never dropped.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable

# Genotypes whose programs one trainer keeps. CPU: 4 x ~6,500 mappings leaves most of Linux's 65,530 to the rest of
# the process (the search's other programs: teacher, encoder, cache; ~3,000-10,000) and still covers the candidate
# in training, the one compiled ahead and a stage 2 whose stage 1 another candidate's compile followed. The bound is
# per trainer: a search on a CPU has one (`parallel.workers` is 1 there); per-genotype programs on several fake CPU
# devices of one process (tests) multiply it.
CPU_RESIDENT = 4
ACCELERATOR_RESIDENT = 16


def capacity(platform: str) -> int:
    """Genotypes whose compiled programs a trainer for ``platform`` ('cpu', 'gpu', 'tpu') keeps loaded."""
    return CPU_RESIDENT if platform == "cpu" else ACCELERATOR_RESIDENT


class Recency:
    """Program keys in order of last use, bounded: `touch` says which keys to let go. Not thread-safe: the table
    calls it under its own lock."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._order: collections.OrderedDict = collections.OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)

    def touch(self, key: Hashable, busy: Callable[[Hashable], bool]) -> list:
        """Mark ``key`` used now; returns the least recently used other keys beyond `capacity` for which
        ``busy(key)`` is false, and forgets them (busy ones stay, so the table may exceed `capacity` a while)."""
        self._order[key] = None
        self._order.move_to_end(key)
        excess = len(self._order) - self.capacity
        dropped = []
        for old in list(self._order)[:-1]:
            if excess <= 0:
                break
            if not busy(old):
                del self._order[old]
                dropped.append(old)
                excess -= 1
        return dropped

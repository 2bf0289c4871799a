"""Exact parameter counts and XLA FLOPs of released-form models, summed from their pieces.

Why pieces again: tracing a whole released model per candidate costs seconds; its pieces are few (`parts`), each
is traced once (memoised) and the sums are exact, not estimates: the parameters of a model are those of its
pieces, and XLA's FLOP count of the unoptimised program (``Lowered.cost_analysis``) adds up op by op
(tests/test_latency_model.py checks both against whole models). Dead code counts as XLA counts it: an adapter
no block reads, and encoder layers after the deepest tap read, are no FLOPs; their parameters still count (the
model holds them; ``params_without_aux`` has always counted them).
"""

from __future__ import annotations

from fdn import genotype as G
from fdn.latency import parts
from fdn.latency import pieces as P


class ExactCounts:
    """``parameters(genotype)`` and ``flops(genotype)`` for one `pieces.Shape` (FLOPs depend on it)."""

    def __init__(self, shape: P.Shape):
        self.shape = shape
        self._levels = None
        self._memo: dict = {}

    def _piece(self, key) -> P.Compiled:
        if key not in self._memo:
            if self._levels is None:
                self._levels = P.level_shapes(self.shape)
            self._memo[key] = P.piece(key, self.shape, self._levels, P.target_device("cpu"))
        return self._memo[key]

    def parameters(self, genotype: G.Genotype) -> int:
        return int(sum(n * self._piece(k).parameters for k, n in parts.count(genotype, executed=False).items()))

    def flops(self, genotype: G.Genotype) -> float:
        return float(sum(n * self._piece(k).flops for k, n in parts.count(genotype).items()))

"""A released-form decoder taken apart into the pieces it executes, counted from the genotype alone.

Why pieces: the search cannot compile every candidate's deployed model to time it, but a candidate is built from
a small set of pieces whose cost depends only on the op and the resolution it runs at. Measure each piece once
(`fdn.latency.pieces`), sum the counts (`fdn.latency.table`), and a candidate costs microseconds to price.

The keys (levels 0..3 = the encoder taps l1..l4, strides 4..32; a block output has its finer input's level, as
``AggregateCell`` upsamples the coarser one):

* ``("encoder", deepest)``: the encoder up to the deepest tap any block reads (XLA drops the layers after it);
* ``("adapter", level)``: the conv1x1 adapter of a tap some block reads (the others are dead code: XLA drops
  them, but their parameters are in the model, so parameter counts take all four);
* ``("op", op_id, level)``: one cell op (``make_op``) at a level, each cell running ``1 + 2 * 3`` ops;
* ``("add", level)``: one elementwise sum of two features inside a cell (pair sums and the loose-end sum);
* ``("agg", finer, coarser)``: an aggregate cell fusing a block's two cell outputs;
* ``("merge", level, n)``: the merge cell over ``n`` collected outputs, all at ``level`` (the finest);
* ``("resize", src, dst, k)``: upsampling a ``k x agg``-channel feature from level ``src`` to ``dst`` on the
  merge cell's fold (the running concatenation grows by one block output each step).

The sum of the pieces' parameters equals the model's and the sum of their XLA FLOPs its XLA FLOPs exactly
(tests/test_latency_model.py checks both); their latencies only approximately add up (XLA fuses across
pieces), which is what the whole-model correction in `fdn.latency.table` is for.
"""

from __future__ import annotations

from collections import Counter

from fdn import genotype as G
from fdn.models import names as N

Key = tuple
ENCODER = N.ENCODER  # the encoder piece is the segmenter's encoder module, keyed by its name


def cell_ops(genotype: G.Genotype) -> list[int]:
    """The op ids one contextual cell runs: op0, then both ops of each pair."""
    return [genotype.op0, *[o for p in genotype.pairs for o in p[2:]]]


def cell_adds(genotype: G.Genotype) -> int:
    """Elementwise sums in one cell: one per pair, plus joining its loose ends."""
    return G.NUM_PAIRS + len(genotype.cell_loose_ends()) - 1


def block_levels(genotype: G.Genotype) -> list[int]:
    """The level of every decoder-pool entry: ``[0, 1, 2, 3]`` for l1..l4, then each block's output."""
    levels = list(range(G.NUM_ENCODER_OUTPUTS))
    for i1, i2 in genotype.blocks:
        levels.append(min(levels[i1], levels[i2]))
    return levels


def merge_parts(collected: list[int]) -> list[Key]:
    """The merge cell's pieces for collected block outputs at these levels (left-to-right fold, as
    ``MergeCell``: whichever side is coarser is upsampled, the running concatenation included)."""
    out = []
    level, width = collected[0], 1
    for other in collected[1:]:
        if level < other:
            out.append(("resize", other, level, 1))
        elif level > other:
            out.append(("resize", level, other, width))
            level = other
        width += 1
    out.append(("merge", level, len(collected)))
    return out


def count(genotype: G.Genotype, executed: bool = True) -> Counter:
    """How many times the released-form model of ``genotype`` runs each piece; ``executed=False``: the pieces
    whose parameters the model holds (the whole encoder and all four adapters, read or not)."""
    used = genotype.encoder_levels_used()
    last = G.NUM_ENCODER_OUTPUTS - 1
    c: Counter = Counter({(ENCODER, max(used) if executed else last): 1})
    c.update(("adapter", lv) for lv in (used if executed else range(G.NUM_ENCODER_OUTPUTS)))
    levels = block_levels(genotype)
    ops, adds = cell_ops(genotype), cell_adds(genotype)
    for i1, i2 in genotype.blocks:
        for src in (i1, i2):
            for op in ops:
                c[("op", op, levels[src])] += 1
            c[("add", levels[src])] += adds
        a, b = sorted((levels[i1], levels[i2]))
        c[("agg", a, b)] += 1
    collected = [levels[G.NUM_ENCODER_OUTPUTS + b] for b in genotype.collected_blocks()]
    c.update(merge_parts(collected))
    return c


def all_keys(num_levels: int = G.NUM_ENCODER_OUTPUTS) -> list[Key]:
    """Every key any genotype can use (what a table measures up front, so no search ever times a piece)."""
    keys = [(ENCODER, lv) for lv in range(num_levels)] + [("adapter", lv) for lv in range(num_levels)]
    keys += [("op", op, lv) for op in range(G.NUM_OPS) for lv in range(num_levels)]
    keys += [("add", lv) for lv in range(num_levels)]
    keys += [("agg", a, b) for a in range(num_levels) for b in range(a, num_levels)]
    keys += [("merge", lv, n) for lv in range(num_levels) for n in range(1, G.NUM_BLOCKS + 1)]
    # resize (src -> finer dst) with k = 1..NUM_BLOCKS - 1 blocks already concatenated
    keys += [("resize", src, dst, k) for src in range(num_levels) for dst in range(src) for k in range(1, G.NUM_BLOCKS)]
    return keys

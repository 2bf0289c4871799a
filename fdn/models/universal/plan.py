"""A genotype as arrays: the data that steers the universal decoder (``fdn.models.universal.decoder``).

Cell slots (7): op0 on ``x``, then the two ops of each of the three pairs. Every slot reads one entry of the
cell's feature buffer, writes its output to its own entry and adds it to its pair's sum entry, so the cell is
one uniform loop. Buffer entries (12): ``[x, op0(x), a1, b1, s1, a2, b2, s2, a3, b3, s3, trash]``; op0's
"sum" goes to the trash entry, which is never read.

Decoder pool (7): the four adapted encoder outputs (levels 0..3, strides 4..32), then the three block
outputs. A block runs at the finer level of its two inputs; its inputs' cells run at their own levels.
"""

from __future__ import annotations

import numpy as np

from fdn import genotype as G
from fdn.models import names as N

NUM_SLOTS = 7
BUFFER_SIZE = 12
TRASH = 11
# Entries a slot can read: x, op0(x) and the first two pairs' a, b and sum (pair 3's are only summed into the output).
READABLE = 8
# Slot s writes feature k + 1 of the cell pool, where ``ops_{k}`` is its module in the ordinary cell.
SLOT_DST = tuple(N.cell_op_index(s) + 1 for s in range(NUM_SLOTS))
SLOT_SUM = (TRASH, 4, 4, 7, 7, 10, 10)


def slot_ops(g: G.Genotype) -> list[int]:
    ops = [g.op0]
    for _, _, o1, o2 in g.pairs:
        ops += [o1, o2]
    return ops


def pool_levels(g: G.Genotype) -> list[int]:
    """Resolution level of every decoder pool entry (0 = l1, the finest)."""
    levels = list(range(G.NUM_ENCODER_OUTPUTS))
    for i1, i2 in g.blocks:
        levels.append(min(levels[i1], levels[i2]))
    return levels


def make_plan(g: G.Genotype, aux_cell: bool = True) -> dict[str, np.ndarray]:
    """Arrays (int32 / bool) describing ``g`` to the universal decoder; the same shapes for every genotype."""
    src = [0]
    for p1, p2, _, _ in g.pairs:
        src += [p1, p2]
    if max(src) >= READABLE:
        raise ValueError(f"cell slot sources {src} reach past the {READABLE} readable buffer entries")
    loose = np.zeros(BUFFER_SIZE, bool)
    loose[g.cell_loose_ends()] = True
    levels = pool_levels(g)
    jobs = 3 if aux_cell else 2
    job_level = np.zeros((G.NUM_BLOCKS, jobs), np.int32)
    for b, (i1, i2) in enumerate(g.blocks):
        job_level[b, 0], job_level[b, 1] = levels[i1], levels[i2]
        if aux_cell:
            job_level[b, 2] = levels[G.NUM_ENCODER_OUTPUTS + b]
    collected = np.zeros(G.NUM_BLOCKS, bool)
    collected[g.collected_blocks()] = True
    final = min(levels[G.NUM_ENCODER_OUTPUTS + b] for b in g.collected_blocks())
    return {
        "slot_op": np.asarray(slot_ops(g), np.int32),
        "slot_src": np.asarray(src, np.int32),
        "slot_dst": np.asarray(SLOT_DST, np.int32),
        "slot_sum": np.asarray(SLOT_SUM, np.int32),
        "loose": loose,
        "block_src": np.asarray(g.blocks, np.int32),
        "job_level": job_level,
        "block_level": np.asarray(levels[G.NUM_ENCODER_OUTPUTS :], np.int32),
        "collected": collected,
        "final_level": np.asarray(final, np.int32),
    }

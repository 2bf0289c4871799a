"""One searched cell run from its plan (``fdn.models.universal.plan``), with a hand-written backward pass.

Forward: a ``lax.scan`` over the cell's 7 slots; a slot reads one entry of a 12-entry feature buffer, runs one of
the 11 ops (a ``lax.switch``; the ordinary Flax op module on its parameter family), writes its output to its own
entry and adds it to its pair's sum entry. The buffer is a tuple of arrays read by a ``switch`` and written by
selects (on XLA:CPU each dynamic_update_slice of a stacked buffer inside a loop ran ~5x slower than a copy).
The cell runs at its level's true size: ``make_cell`` switches over the 4 levels and pads the result to the
canvas.

Backward (``make_cell(train=True)`` is a ``jax.custom_vjp``): a cell job keeps its input canvas and the
buffer entries a slot can read that are not sums (``SAVED``: op0's output and the first two pairs' a and b, each
padded to the canvas; the two sums are added again). Its VJP walks the slots in reverse: the cotangent of a
slot's output is that of its own entry plus its sum entry's; the slot's VJP (a switch over each op's own VJP,
which recomputes that op's forward) gives the cotangents of its parameters and of its input, and the latter is
added into the entry the slot read. Why not let JAX differentiate the scan: it saves every slot's input stacked
per slot and -- through the switch over levels -- once per level, and the decoder's scan over its 9 jobs stacks
that again (the paper's stage 1 at batch 16: ~1.7 GB per step, zero-filled and copied every step); its transpose
also writes every buffer entry's cotangent at every slot. Why keep the entries rather than run the cell again in
the backward (as before): that second forward was a third of the cell's op work (each op's forward ran three
times; now twice, once in a per-genotype program); the entries cost 5 canvases per job (~0.6 GB per step at the paper's
stage 1, batch 16). Values are the same up to float reassociation (``tests/test_universal.py`` compares
gradients with the ordinary decoder's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fdn import genotype as G
from fdn.models import names as N
from fdn.models.ops import make_op
from fdn.models.universal import plan as P

SLOT_KEYS = ("slot_op", "slot_src", "slot_dst", "slot_sum", "loose")
# Buffer entries the backward reads that are not sums (x, entry 0, is the cell's input): op0(x), a1, b1, a2, b2.
SAVED = (1, 2, 3, 5, 6)
# The readable sum entries and their two terms: s1 = a1 + b1, s2 = a2 + b2 (``plan.SLOT_SUM``).
SUMS = {4: (2, 3), 7: (5, 6)}


def op_branches(channels: int, repeats: int, train: bool) -> list:
    """Branch ``op``: (bank params, bank stats, x) -> (y, new bank stats), at x's own size."""

    def branch(op):
        module = make_op(op, channels, repeats, "op")
        fam = G.OPS[op].family

        def run(bank, stats, x):
            if fam is None:
                return module.apply({}, x, train), stats
            variables = {N.PARAMS: bank[fam], N.BATCH_STATS: stats[fam]}
            if train:
                y, upd = module.apply(variables, x, train, mutable=[N.BATCH_STATS])
                return y, dict(stats, **{fam: upd[N.BATCH_STATS]})
            return module.apply(variables, x, train), stats

        return run

    return [branch(op) for op in range(G.NUM_OPS)]


def pick(entries: tuple, index):
    """``entries[index]`` for a traced index (a switch: one copy, whatever the number of entries)."""
    return jax.lax.switch(index, [lambda i=i: entries[i] for i in range(len(entries))])


def _forward(branches, slots, banks, stats, x):
    """The cell on ``x`` (its true size). Returns (y, new stats stacked per slot, the buffer's entries below the
    trash entry: what the slots read, and pair 3's, which only the output sums)."""
    op, src, dst, sum_dst, loose = slots
    bufs = (x,) + tuple(jnp.zeros_like(x) for _ in range(P.TRASH - 1))  # writes to the trash entry vanish

    def step(bufs, xs):
        op, src, dst, sum_dst, bank, st = xs
        y, st = jax.lax.switch(op, branches, bank, st, pick(bufs, src))
        written = (jnp.where(dst == i, y, jnp.where(sum_dst == i, b + y, b)) for i, b in enumerate(bufs[1:], 1))
        return (bufs[0], *written), st  # x (entry 0) is never written

    bufs, new_stats = jax.lax.scan(step, bufs, (op, src, dst, sum_dst, banks, stats))
    out = jnp.zeros_like(x)
    for i, b in enumerate(bufs):
        out = out + jnp.where(loose[i], b, 0.0)
    return out, new_stats, bufs


def _backward(branches, slots, banks, stats, bufs, g_out):
    """Cotangents (of the slots' banks, of the cell's input) from the final buffer and the output's cotangent."""
    op, src, dst, sum_dst, loose = slots
    zero = jnp.zeros_like(g_out)
    grads = tuple(jnp.where(loose[i], g_out, zero) for i in range(P.TRASH))

    def vjp_branch(run):
        def back(bank, st, x, g_y):
            _, vjp = jax.vjp(lambda p, xx: run(p, st, xx)[0], bank, x)
            return vjp(g_y)

        return back

    back_branches = [vjp_branch(run) for run in branches]

    def step(grads, xs):
        op, src, dst, sum_dst, bank, st = xs
        g_y = pick(grads, dst) + pick((*grads, zero), sum_dst)  # op0's sum entry is the trash: no cotangent
        g_bank, g_x = jax.lax.switch(op, back_branches, bank, st, pick(bufs, src), g_y)
        read = (jnp.where(src == i, g + g_x, g) for i, g in enumerate(grads[: P.READABLE]))
        grads = (*read, *grads[P.READABLE :])
        return grads, g_bank

    grads, g_banks = jax.lax.scan(step, grads, (op, src, dst, sum_dst, banks, stats), reverse=True)
    return g_banks, grads[0]


def make_cell(channels: int, repeats: int, sizes, train: bool):
    """``cell(slots, level, banks, stats, canvas) -> (output canvas, new stats)``: the cell on the level-``level``
    region of ``canvas`` (``sizes``: the 4 levels' (h, w), finest first = the canvas). ``slots``: the plan's
    ``SLOT_KEYS`` arrays; ``banks`` / ``stats``: per-slot parameter and statistics banks (leading axis 7)."""
    branches = op_branches(channels, repeats, train)
    canvas_hw = sizes[0]

    def pad(x):
        return jnp.pad(x, ((0, 0), (0, canvas_hw[0] - x.shape[1]), (0, canvas_hw[1] - x.shape[2]), (0, 0)))

    def at_level(r, fn):
        h, w = sizes[r]
        return lambda *args: fn(h, w, *args)

    def forward(slots, level, banks, stats, canvas, keep=False):
        """The cell on the canvas; with ``keep`` also the ``SAVED`` entries, padded to the canvas."""

        def run(h, w, banks, stats, canvas):
            y, st, bufs = _forward(branches, slots, banks, stats, canvas[:, :h, :w])
            return (pad(y), st) + ((tuple(pad(bufs[i]) for i in SAVED),) if keep else ())

        return jax.lax.switch(level, [at_level(r, run) for r in range(len(sizes))], banks, stats, canvas)

    if not train:
        return forward

    @jax.custom_vjp
    def cell(slots, level, banks, stats, canvas):
        return forward(slots, level, banks, stats, canvas)

    def cell_fwd(slots, level, banks, stats, canvas):
        y, st, saved = forward(slots, level, banks, stats, canvas, keep=True)
        return (y, st), (slots, level, banks, stats, canvas, saved)

    def cell_bwd(res, cts):
        slots, level, banks, stats, canvas, saved = res

        def run(h, w, banks, stats, canvas, saved, g_canvas):
            entries = {0: canvas[:, :h, :w], **dict(zip(SAVED, (e[:, :h, :w] for e in saved)))}
            entries.update({s: entries[a] + entries[b] for s, (a, b) in SUMS.items()})
            bufs = tuple(entries[i] for i in range(P.READABLE))
            g_banks, g_x = _backward(branches, slots, banks, stats, bufs, g_canvas[:, :h, :w])
            return g_banks, pad(g_x)

        branches_bwd = [at_level(r, run) for r in range(len(sizes))]
        g_banks, g_canvas = jax.lax.switch(level, branches_bwd, banks, stats, canvas, saved, cts[0])
        return None, None, g_banks, None, g_canvas

    cell.defvjp(cell_fwd, cell_bwd)
    return cell

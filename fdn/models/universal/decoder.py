"""The universal decoder: every genotype's decoder as one program, steered by a plan (``fdn.models.universal.plan``).

Shapes: the four encoder outputs sit at levels 0..3; every pool entry is kept on a *canvas* of level 0's size
(zero outside its own level's region) so that entries of any level can be stored, indexed and selected by
data. Work runs at each entry's true resolution:

* a cell (``fdn.models.universal.cell``) is a ``lax.switch`` over the 4 levels; each branch slices the canvas to
  its level's size, runs the cell there (a ``lax.scan`` over the 7 slots, each a ``lax.switch`` over the 11
  ops, reading and writing a 12-entry feature buffer) and pads back. Its backward pass is written by hand: a
  job keeps its input canvas and the buffer's five non-sum readable entries, and the backward walks the slots
  in reverse (letting JAX differentiate the loops stacked every slot's input per slot, per level and per
  job: ~1.7 GB per step at the paper's stage 1, batch 16);
* the decoder's cells are one flat ``lax.scan`` over the 9 jobs (per block: input cell 1, input cell 2,
  auxiliary cell); the aggregate cell runs before each auxiliary job (``lax.cond``), so the program holds one
  copy of the cell, whatever the genotype; the aggregate is rematerialised too (``jax.checkpoint``: the
  conditional would otherwise stack its residuals, zero for the 6 jobs that skip it, at every job); without
  aux heads (evaluation) the scan has 6 jobs and the aggregate follows each block's second cell;
* pools and buffers are tuples of arrays read with a ``switch`` and written with selects (on XLA:CPU a
  dynamic_update_slice of a stacked array inside a loop ran ~5x slower than a copy);
* canvas-level parts (aggregate, merge, classifiers) use masked BatchNorm statistics and level-to-level
  resizes chosen by ``lax.switch`` over the 16 (from, to) pairs.

The result equals ``fdn.models.decoder.Decoder`` on the same variables (mapped by
``fdn.models.universal.layout``), up to
float reassociation; ``tests/test_universal.py`` checks outputs, BN updates and gradients.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fdn import genotype as G
from fdn.models import names as N
from fdn.models.conv import conv2d
from fdn.models.decoder import DecoderSettings
from fdn.models.layers import ConvBN, normalizer, running_average, unbiased_variance
from fdn.models.resize import resize_bilinear
from fdn.models.universal import layout as L
from fdn.models.universal.cell import SLOT_KEYS, make_cell, pick

LEVELS = G.NUM_ENCODER_OUTPUTS


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Spatial sizes (h, w) of the four levels, finest first (the encoder outputs' sizes)."""

    sizes: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, features) -> Geometry:
        return cls(tuple((int(f.shape[1]), int(f.shape[2])) for f in features))

    def __post_init__(self):
        heights = [s[0] for s in self.sizes]
        if len(self.sizes) != LEVELS or any(a <= b for a, b in zip(heights, heights[1:])):
            raise ValueError(f"universal decoder: level sizes must shrink strictly, got {self.sizes}")

    @property
    def canvas(self) -> tuple[int, int]:
        return self.sizes[0]

    def masks(self) -> np.ndarray:
        """(LEVELS, H0, W0, 1) float32: 1 inside each level's region."""
        h0, w0 = self.canvas
        m = np.zeros((LEVELS, h0, w0, 1), np.float32)
        for r, (h, w) in enumerate(self.sizes):
            m[r, :h, :w] = 1
        return m

    def counts(self) -> np.ndarray:
        return np.asarray([h * w for h, w in self.sizes], np.float32)


def _pad(x, canvas):
    return jnp.pad(x, ((0, 0), (0, canvas[0] - x.shape[1]), (0, canvas[1] - x.shape[2]), (0, 0)))


def resize_levels(x, src, dst, geom: Geometry):
    """Canvas at level ``src`` -> canvas at level ``dst`` (bilinear, as ``resize_bilinear``); traced levels."""

    def branch(s, d):
        def run(x):
            if s == d:
                return x
            h, w = geom.sizes[s]
            return _pad(resize_bilinear(x[:, :h, :w], geom.sizes[d]), geom.canvas)

        return run

    return jax.lax.switch(src * LEVELS + dst, [branch(s, d) for s in range(LEVELS) for d in range(LEVELS)], x)


def resize_from_level(x, level, size, geom: Geometry):
    """The level-``level`` region of canvas ``x`` resized (bilinear) to the static ``size``."""

    def branch(s):
        def run(x):
            h, w = geom.sizes[s]
            return resize_bilinear(x[:, :h, :w], size)

        return run

    return jax.lax.switch(level, [branch(s) for s in range(LEVELS)], x)


def _put(entries: tuple, value, index) -> tuple:
    """``entries`` with entry ``index`` (traced; none when out of range) replaced by ``value``. Each entry costs a
    select here and a select and a sum in the backward, so callers pass only the entries that can be written."""
    return tuple(jnp.where(index == i, value, e) for i, e in enumerate(entries))


def put_block_output(pool: tuple, value, block) -> tuple:
    """The decoder pool with block ``block``'s output (traced; none when out of range) set: the adapters'
    entries are never written, so they pass through untouched."""
    return pool[:LEVELS] + _put(pool[LEVELS:], value, block)


def _conv(x, kernel, padding: int):
    return conv2d(x, kernel.astype(x.dtype), 1, padding, 1)


def masked_conv_bn(params, stats, x, level, geom: Geometry, train: bool):
    """conv1x1 -> BN -> ReLU on a canvas whose valid region is ``level``'s: BN statistics over that region
    only (the ordinary BatchNorm's numerics: biased for normalising, unbiased for the running variance);
    the output is zero outside the region. Statistics in at least float32, the output in ``x``'s dtype (as the
    ordinary BatchNorm's: bfloat16 programs, `fdn.candidate.precision`)."""
    y = _conv(x, params[N.CONV][N.KERNEL], 0).astype(jnp.promote_types(x.dtype, jnp.float32))
    mask = jnp.asarray(geom.masks())[level]
    bn, st = params[N.BN], stats[N.BN]
    if train:
        n = x.shape[0] * jnp.asarray(geom.counts())[level]
        mean = jnp.sum(y * mask, (0, 1, 2)) / n
        var = jnp.sum(jnp.square((y - mean) * mask), (0, 1, 2)) / n
        new = {
            N.BN: {
                N.MEAN: running_average(st[N.MEAN], mean),
                N.VAR: running_average(st[N.VAR], unbiased_variance(var, n)),
            }
        }
    else:
        mean, var, new = st[N.MEAN], st[N.VAR], stats
    mul, shift = normalizer(mean, var, bn[N.SCALE], bn[N.BIAS])
    y = jax.nn.relu(y * mul + shift)
    return (y * mask).astype(x.dtype), new


class UniversalDecoder:
    """``apply(variables, features, plan, train) -> (logits canvas, final level, aux canvases, new stats)``.

    ``variables``: universal {'params', 'batch_stats'} (``fdn.models.universal.layout.Layout``); ``features``: the
    four encoder outputs; ``plan``: ``fdn.models.universal.plan.make_plan`` arrays (traced: one compile serves every
    genotype). Aux canvases (one per block, at its level) are returned only with ``with_aux``.
    """

    def __init__(self, settings: DecoderSettings):
        self.settings = settings
        self.layout = L.Layout(settings)
        self.channels = settings.agg_size
        self.jobs = self.layout.jobs

    # ------------------------------------------------------------------------------------ aggregate / heads
    def _aggregate(self, params, stats, y1, r1, y2, r2, geom, train):
        one, two = N.aggregate_branch_name(1), N.aggregate_branch_name(2)
        a, st1 = masked_conv_bn(params[one], stats[one], y1, r1, geom, train)
        b, st2 = masked_conv_bn(params[two], stats[two], y2, r2, geom, train)
        level = jnp.minimum(r1, r2)
        out = resize_levels(a, r1, level, geom) + resize_levels(b, r2, level, geom)
        return out, {one: st1, two: st2}

    # ------------------------------------------------------------------------------------ whole decoder
    def _adapt(self, params, stats, features, geom: Geometry, train: bool):
        """The four adapters (ordinary ``ConvBN`` modules at each encoder output's own size) -> the pool's
        first four canvases, and their new statistics."""
        pool, new_stats = [], {}
        for i, f in enumerate(features):
            name = N.adapter_name(i)
            v = {N.PARAMS: params[name], N.BATCH_STATS: stats[name]}
            module = ConvBN(self.channels, 1)
            if train:
                y, upd = module.apply(v, f, train, mutable=[N.BATCH_STATS])
                new_stats[name] = upd[N.BATCH_STATS]
            else:
                y = module.apply(v, f, train)
                new_stats[name] = stats[name]
            pool.append(_pad(y, geom.canvas))
        return tuple(pool), new_stats

    def _blocks(self, params, stats, pool, plan, geom: Geometry, train: bool, with_aux: bool):
        """The three blocks' cells and aggregates as one flat scan over the jobs. Returns the pool with the
        block outputs, the aux heads' inputs, and the new statistics of the cells and the aggregates. Without
        ``with_aux`` the auxiliary cells do not run (a third of the cell work; as the ordinary decoder, their
        statistics stay as they were) and each block's aggregate follows its second cell."""
        cell_fn = make_cell(self.channels, self.settings.repeats, geom.sizes, train)
        slots = tuple(plan[k] for k in SLOT_KEYS)
        aux_cell = self.jobs == 3 and with_aux
        jobs = 3 if aux_cell else 2
        n_jobs = G.NUM_BLOCKS * jobs
        lead = lambda t: jax.tree.map(lambda a: a[:, :jobs].reshape((n_jobs,) + a.shape[2:]), t)  # noqa: E731
        cell = lambda *a: cell_fn(slots, *a)  # noqa: E731
        block_src, job_level = plan["block_src"], plan["job_level"]

        def job(carry, xs):
            """One cell of one block. A single flat scan over all blocks' jobs: nested scans' residual
            stacks made the backward pass several times slower on XLA:CPU; the cell's hand-written backward
            and the rematerialised aggregate keep a job's residuals to its input, five buffer entries and the
            aggregate's."""
            pool, outs, aux_ins, agg_s = carry
            j, banks_j, stats_j = xs
            b, role = j // jobs, j % jobs
            agg_p_b = jax.tree.map(lambda a: a[b], params[L.AGGREGATES])
            agg_s_b = jax.tree.map(lambda a: a[b], agg_s)
            levels_b = job_level[b]

            def fetch(outs, st):
                return pick(pool, block_src[b, jnp.minimum(role, 1)]), st

            @jax.checkpoint
            def aggregate(outs, st):
                return self._aggregate(agg_p_b, st, outs[0], levels_b[0], outs[1], levels_b[1], geom, train)

            if aux_cell:  # the aux job's input is the block output: aggregate first
                x, agg_s_b = jax.lax.cond(role == 2, aggregate, fetch, outs, agg_s_b)
                pool = put_block_output(pool, x, jnp.where(role == 2, b, -1))
            else:
                x, _ = fetch(outs, agg_s_b)
            y, stats_j = cell(job_level[b, role], banks_j, stats_j, x)
            outs = _put(outs, y, role)
            if aux_cell:
                aux_ins = _put(aux_ins, y, jnp.where(role == 2, b, -1))
            else:  # the block output follows the second cell
                out, agg_s_b = jax.lax.cond(role == 1, aggregate, fetch, outs, agg_s_b)
                pool = put_block_output(pool, out, jnp.where(role == 1, b, -1))
                aux_ins = _put(aux_ins, out, jnp.where(role == 1, b, -1))
            agg_s = jax.tree.map(lambda a, n: a.at[b].set(n), agg_s, agg_s_b)
            return (pool, outs, aux_ins, agg_s), stats_j

        zeros = lambda n: tuple(jnp.zeros_like(pool[0]) for _ in range(n))  # noqa: E731
        init = (pool, zeros(2), zeros(G.NUM_BLOCKS), stats[L.AGGREGATES])  # outs: the two input cells' outputs
        (pool, _, aux_ins, agg_stats), cell_stats = jax.lax.scan(
            job, init, (jnp.arange(n_jobs), lead(params[L.CELL_BANKS]), lead(stats[L.CELL_BANKS]))
        )
        cell_stats = jax.tree.map(lambda a: a.reshape((G.NUM_BLOCKS, jobs) + a.shape[1:]), cell_stats)
        if jobs < self.jobs:  # the aux cells' statistics, unchanged
            cell_stats = jax.tree.map(
                lambda new, old: jnp.concatenate([new, old[:, jobs:]], axis=1), cell_stats, stats[L.CELL_BANKS]
            )
        return pool, aux_ins, {L.CELL_BANKS: cell_stats, L.AGGREGATES: agg_stats}

    def _merge(self, params, stats, pool, plan, geom: Geometry, train: bool):
        """The merge cell: fold the collected block outputs left to right into channel slots, resizing to the
        finer level, then the masked conv1x1-BN-ReLU and the classifier. Returns (logits, level, new stats)."""
        c = self.channels
        concat = jnp.zeros(pool[0].shape[:3] + (G.NUM_BLOCKS * c,), pool[0].dtype)
        level, count = jnp.int32(LEVELS - 1), jnp.int32(0)
        for b in range(G.NUM_BLOCKS):
            taken, own = plan["collected"][b], plan["block_level"][b]
            target = jnp.where(count == 0, own, jnp.minimum(level, own))
            moved = resize_levels(concat, level, target, geom)
            out = resize_levels(pool[LEVELS + b], own, target, geom)
            moved = jax.lax.dynamic_update_slice_in_dim(moved, out, count * c, axis=3)
            concat = jnp.where(taken, moved, concat)
            level = jnp.where(taken, target, level)
            count = count + taken.astype(jnp.int32)
        m = params[N.MERGE]
        x, pre_stats = masked_conv_bn(
            m[N.MERGE_PRE], stats[N.MERGE][N.MERGE_PRE], jax.nn.relu(concat), level, geom, train
        )
        clf = m[N.MERGE_CLASSIFIER]
        logits = _conv(x, clf[N.KERNEL], 1) + clf[N.BIAS]
        return logits, level, {N.MERGE_PRE: pre_stats}

    def apply(self, variables, features, plan, train: bool = False, with_aux: bool = True):
        geom = Geometry.of(features)
        params, stats = variables[N.PARAMS], variables[N.BATCH_STATS]
        pool, new_stats = self._adapt(params, stats, features, geom, train)
        pool = pool + tuple(jnp.zeros_like(pool[0]) for _ in range(G.NUM_BLOCKS))
        pool, aux_ins, block_stats = self._blocks(params, stats, pool, plan, geom, train, with_aux)
        new_stats.update(block_stats)
        aux = []
        if with_aux:
            for b in range(G.NUM_BLOCKS):
                k = params[L.AUX_CLASSIFIERS]
                aux.append(_conv(aux_ins[b], k[N.KERNEL][b], 1) + k[N.BIAS][b])
        logits, level, new_stats[N.MERGE] = self._merge(params, stats, pool, plan, geom, train)
        return logits, level, aux, new_stats

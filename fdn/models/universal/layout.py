"""The universal decoder's parameters: one fixed layout for every genotype, and the maps to and from the
ordinary ``fdn.models.decoder.Decoder`` variables.

Each cell slot owns a *bank* with one parameter set per op family (ops that differ only in dilation share
a family: conv3x3 / rate 3 / rate 12, sep3x3 / rate 3, sep5x5 / rate 6); the slot's op uses its family's set
and the others stay zero (zero parameters get zero gradient, zero L2 and zero Adam moments, so they stay
zero through training). Banks are stacked ``[block, job, slot]`` (jobs: the block's two input cells, then
its auxiliary cell). The merge cell's first conv reads all three block outputs' channel slots; rows of
blocks a genotype does not collect are zero. Everything else keeps the ordinary layout, stacked over blocks.

Converting an ordinary decoder's variables in and out is exact (a test round-trips them), so the search keeps
the ordinary initialisation, parameter counts and checkpoints.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fdn import genotype as G
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.ops import make_op
from fdn.models.universal import plan as P


def _family_ops() -> dict[str, int]:
    """Parameter family (``fdn.genotype.OpSpec.family``) -> the first op that uses it, whose module gives the
    family's shapes; ops without parameters have no family."""
    out: dict[str, int] = {}
    for op in G.OPS:
        if op.family is not None:
            out.setdefault(op.family, op.id)
    return out


FAMILY_OP = _family_ops()
FAMILIES = tuple(FAMILY_OP)
COLLECTIONS = (N.PARAMS, N.BATCH_STATS)
# The universal tree's own top-level entries (the adapters and the merge cell keep their ordinary names).
CELL_BANKS = "cells"  # [block, job, slot]-stacked banks, one sub-tree per family
AGGREGATES = "agg"  # the aggregate cells, stacked over blocks
AUX_CLASSIFIERS = "aux_clf"  # the aux heads' classifiers, stacked over blocks
MERGE_PRE_KERNEL = (N.MERGE, N.MERGE_PRE, N.CONV, N.KERNEL)
ADAPTERS = tuple(N.adapter_name(i) for i in range(G.NUM_ENCODER_OUTPUTS))


def _family_abstract(family: str, channels: int, repeats: int) -> dict:
    module = make_op(FAMILY_OP[family], channels, repeats, "op")
    x = jax.ShapeDtypeStruct((1, 4, 4, channels), jnp.float32)
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(x.shape), False))


def _blank(shape_tree, lead: tuple[int, ...]):
    """numpy zeros (ones for running variances) with leading dims ``lead``."""

    def leaf(path, x):
        fill = np.ones if path[-1].key == N.VAR else np.zeros
        return fill(lead + tuple(x.shape), np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shape_tree)


class Layout:
    """The universal layout for a decoder's settings (``jobs`` = 3 with auxiliary cells, else 2)."""

    def __init__(self, settings: DecoderSettings):
        self.settings = settings
        self.channels = settings.agg_size
        self.jobs = 3 if settings.aux_cell else 2
        self.family = {f: _family_abstract(f, self.channels, settings.repeats) for f in FAMILIES}

    # ------------------------------------------------------------------------------------ names
    def job_path(self, b: int, j: int) -> tuple[str, ...]:
        """Where job ``j`` of block ``b`` lives in the ordinary decoder's tree."""
        return ((N.input_cell_name(b, 1),), (N.input_cell_name(b, 2),), (N.aux_head_name(b), N.AUX_CELL))[j]

    # ------------------------------------------------------------------------------------ to universal
    def to_universal(self, variables: dict, genotype: G.Genotype) -> dict:
        """Ordinary decoder variables ({'params', 'batch_stats'}) -> universal ones (numpy, float32)."""
        ops = P.slot_ops(genotype)
        n_blocks, c = G.NUM_BLOCKS, self.channels
        out = {}
        for coll in COLLECTIONS:
            src = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables[coll]).items()}
            dst = {}
            for i in range(G.NUM_ENCODER_OUTPUTS):
                for k, v in src.items():
                    if k[0] == N.adapter_name(i):
                        dst[k] = v
            # cell banks
            for fam in FAMILIES:
                blank = traverse_util.flatten_dict(
                    _blank(self.family[fam].get(coll, {}), (n_blocks, self.jobs, P.NUM_SLOTS))
                )
                for b in range(n_blocks):
                    for j in range(self.jobs):
                        for s, op in enumerate(ops):
                            if G.OPS[op].family != fam:
                                continue
                            base = self.job_path(b, j) + (N.cell_op_name(s),)
                            for sub, arr in blank.items():
                                arr[b, j, s] = src[base + sub]
                for sub, arr in blank.items():
                    dst[(CELL_BANKS, fam) + sub] = arr
            # per-block parts, stacked
            for name, path in (
                (AGGREGATES, lambda b: (N.aggregate_name(b),)),
                (AUX_CLASSIFIERS, lambda b: (N.aux_head_name(b), N.AUX_CLASSIFIER)),
            ):
                first = path(0)
                subs = [k[len(first) :] for k in src if k[: len(first)] == first]
                for sub in subs:
                    dst[(name,) + sub] = np.stack([src[path(b) + sub] for b in range(n_blocks)])
            # merge
            for k, v in src.items():
                if k[0] != N.MERGE:
                    continue
                if k == MERGE_PRE_KERNEL:
                    full = np.zeros(v.shape[:2] + (G.NUM_BLOCKS * c, v.shape[3]), np.float32)
                    full[:, :, : v.shape[2]] = v
                    v = full
                dst[k] = v
            out[coll] = traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in dst.items()})
        return out

    # ------------------------------------------------------------------------------------ from universal
    def from_universal(self, variables: dict, genotype: G.Genotype) -> dict:
        """Universal variables -> the ordinary decoder's (jax or numpy arrays; slicing only, no host sync)."""
        ops = P.slot_ops(genotype)
        n_collected = len(genotype.collected_blocks())
        out = {}
        for coll in COLLECTIONS:
            src = traverse_util.flatten_dict(variables[coll])
            dst = {}
            for k, v in src.items():
                head = k[0]
                if head in ADAPTERS:
                    dst[k] = v
                elif head == CELL_BANKS:
                    fam, sub = k[1], k[2:]
                    for b in range(G.NUM_BLOCKS):
                        for j in range(self.jobs):
                            for s, op in enumerate(ops):
                                if G.OPS[op].family == fam:
                                    dst[self.job_path(b, j) + (N.cell_op_name(s),) + sub] = v[b, j, s]
                elif head == AGGREGATES:
                    for b in range(G.NUM_BLOCKS):
                        dst[(N.aggregate_name(b),) + k[1:]] = v[b]
                elif head == AUX_CLASSIFIERS:
                    for b in range(G.NUM_BLOCKS):
                        dst[(N.aux_head_name(b), N.AUX_CLASSIFIER) + k[1:]] = v[b]
                elif k == MERGE_PRE_KERNEL:
                    dst[k] = v[:, :, : n_collected * self.channels]
                else:
                    dst[k] = v
            out[coll] = traverse_util.unflatten_dict(dst)
        return out

    # ------------------------------------------------------------------------------------ abstract
    def abstract(self, decoder_abstract: dict, genotype: G.Genotype) -> dict:
        """ShapeDtypeStructs of the universal variables, from any genotype's ordinary abstract variables."""
        concrete = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), decoder_abstract)
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), self.to_universal(concrete, genotype))

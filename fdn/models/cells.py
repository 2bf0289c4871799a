"""The decoder's three kinds of cell.

* ``ContextualCell``: the searched cell (op0 on the input, then three pairs picking features by position from
  ``[x, op0(x), a1, b1, s1, a2, b2, s2]``); its output is the sum of its loose ends.
* ``AggregateCell``: fuses a block's two cell outputs (conv1x1-BN-ReLU on each, the coarser one upsampled to
  the finer one's size, summed).
* ``MergeCell``: the final head; block outputs no later block consumed are concatenated left to right, the
  running concatenation or the next output upsampled to whichever is taller (so an early coarse output can be
  interpolated twice, as in the official code), then ReLU, conv1x1-BN-ReLU and a 3x3 classifier with bias.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from fdn import genotype as G
from fdn.models import names
from fdn.models.layers import Conv, ConvBN
from fdn.models.ops import make_op
from fdn.models.resize import resize_bilinear


class ContextualCell(nn.Module):
    """One instance of the searched cell design. Op modules are named ``ops_{k}`` after the feature index
    ``k + 1`` they produce (so ``ops_3`` and ``ops_6``, the pair sums, do not exist), like the official ``_ops``."""

    genotype: G.Genotype
    channels: int
    repeats: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        g = self.genotype
        feats = [x, make_op(g.op0, self.channels, self.repeats, names.cell_op_name(0))(x, train)]
        for layer, (p1, p2, o1, o2) in enumerate(g.pairs, start=1):
            a = make_op(o1, self.channels, self.repeats, names.cell_op_name(2 * layer - 1))(feats[p1], train)
            b = make_op(o2, self.channels, self.repeats, names.cell_op_name(2 * layer))(feats[p2], train)
            feats += [a, b, a + b]
        ends = g.cell_loose_ends()
        out = feats[ends[0]]
        for e in ends[1:]:
            out = out + feats[e]
        return out


def _larger(a_shape, b_shape) -> bool:
    """The official AggregateCell compares full sizes lexicographically to decide which input is larger."""
    return tuple(a_shape[1:3]) > tuple(b_shape[1:3])


class AggregateCell(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x1, x2, train: bool):
        x1 = ConvBN(self.channels, 1, name=names.aggregate_branch_name(1))(x1, train)
        x2 = ConvBN(self.channels, 1, name=names.aggregate_branch_name(2))(x2, train)
        if _larger(x1.shape, x2.shape):
            x2 = resize_bilinear(x2, x1.shape[1:3])
        elif _larger(x2.shape, x1.shape):
            x1 = resize_bilinear(x1, x2.shape[1:3])
        return x1 + x2


class MergeCell(nn.Module):
    channels: int
    num_classes: int

    @nn.compact
    def __call__(self, outs: list, train: bool):
        x = outs[0]
        for o in outs[1:]:  # the official collect_all: fold left, upsampling whichever is shorter
            if x.shape[1] > o.shape[1]:
                o = resize_bilinear(o, x.shape[1:3])
            elif x.shape[1] < o.shape[1]:
                x = resize_bilinear(x, o.shape[1:3])
            x = jnp.concatenate([x, o], axis=-1)
        x = nn.relu(x)
        x = ConvBN(self.channels, 1, name=names.MERGE_PRE)(x, train)
        return Conv(self.num_classes, 3, padding=1, use_bias=True, name=names.MERGE_CLASSIFIER)(x)

"""The modules of the 11 candidate operations; which op an id means is the op table, ``fdn.genotype.OPS``.

Every op keeps the channel count (the decoder's agg size) and the resolution. Separable convs are
``depthwise k x k -> pointwise 1x1 -> BN -> ReLU`` repeated ``repeats`` times (1 during the search, 2 in the
released models), with no ReLU before the convs.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from fdn import genotype as G
from fdn.models import names
from fdn.models.layers import BatchNorm, Conv, ConvBN, DepthwiseConv
from fdn.models.resize import resize_bilinear


class SepConv(nn.Module):
    kernel_size: int
    padding: int
    dilation: int = 1
    repeats: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        for r in range(self.repeats):
            dw, pw, bn = names.sep_conv_names(r)
            x = DepthwiseConv(self.kernel_size, 1, self.padding, self.dilation, name=dw)(x)
            x = Conv(c, 1, name=pw)(x)
            x = nn.relu(BatchNorm(name=bn)(x, train))
        return x


class GlobalAveragePool(nn.Module):
    """Spatial mean -> conv1x1-BN-ReLU at 1x1 -> back to the input size (a broadcast)."""

    @nn.compact
    def __call__(self, x, train: bool):
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
        y = ConvBN(x.shape[-1], 1, name=names.CONV1X1)(pooled, train)
        return resize_bilinear(y, x.shape[1:3])


class Identity(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        return x


class Zero(nn.Module):
    """The 'none' op: x * 0, which (as in the official code) lets NaN and Inf through."""

    @nn.compact
    def __call__(self, x, train: bool):
        return x * 0.0


# Constructors by ``OpSpec.kind``; each op's geometry comes from the op table (``fdn.genotype.OPS``).
_BUILDERS = {
    "conv": lambda op, channels, repeats, name: ConvBN(
        channels, op.kernel, padding=op.padding, dilation=op.dilation, name=name
    ),
    "sep": lambda op, channels, repeats, name: SepConv(op.kernel, op.padding, op.dilation, repeats, name=name),
    "gap": lambda op, channels, repeats, name: GlobalAveragePool(name=name),
    "skip": lambda op, channels, repeats, name: Identity(name=name),
    "zero": lambda op, channels, repeats, name: Zero(name=name),
}


def make_op(op_id: int, channels: int, repeats: int, name: str) -> nn.Module:
    """A fresh module for op ``op_id`` (0..10, ``fdn.genotype.OPS``); ``name`` fixes its parameter path."""
    if not 0 <= op_id < G.NUM_OPS:
        raise G.GenotypeError(f"op id {op_id} is out of range 0..{G.NUM_OPS - 1}")
    op = G.OPS[op_id]
    return _BUILDERS[op.kind](op, channels, repeats, name)

"""The searched decoder (the official ``MicroDecoder``).

1. ``adapt{1..4}``: conv1x1-BN-ReLU from each encoder output to ``agg_size`` channels (all four run, used or
   not, as in the official code: their BN statistics move in training).
2. Three blocks: block b fuses two entries of the pool ``[l1, l2, l3, l4, b1, ...]``, each through its own
   contextual cell (same design, separate weights), then an aggregate cell; the result joins the pool.
3. An auxiliary head per block (auxiliary cell if ``aux_cell``, then a 3x3 classifier), for intermediate
   supervision during training; computed only when asked for (the official code always computes them).
4. The merge cell over the block outputs that no later block consumed.
"""

from __future__ import annotations

import dataclasses

from flax import linen as nn

from fdn import genotype as G
from fdn.errors import InputError
from fdn.models import names
from fdn.models.cells import AggregateCell, ContextualCell, MergeCell
from fdn.models.layers import Conv, ConvBN


@dataclasses.dataclass(frozen=True)
class DecoderSettings:
    """Decoder hyper-parameters that are not searched. Search: 48/1/True; released models: 64/2/False."""

    num_classes: int = 21
    agg_size: int = 48
    repeats: int = 1
    aux_cell: bool = True

    def __post_init__(self):
        """A width or depth below 1 (a flag or config setting) otherwise fails deep inside Flax or XLA with a
        traceback, or builds a model without outputs; refused here, where every model is described."""
        for name in ("num_classes", "agg_size", "repeats"):
            value = getattr(self, name)
            if value < 1:
                raise InputError(f"decoder setting {name}={value}: it must be at least 1; fix the flag or config value")

    @classmethod
    def search(cls, num_classes: int = 21) -> DecoderSettings:
        return cls(num_classes, 48, 1, True)

    @classmethod
    def released(cls, num_classes: int = 21) -> DecoderSettings:
        return cls(num_classes, 64, 2, False)


class AuxHead(nn.Module):
    settings: DecoderSettings
    genotype: G.Genotype

    @nn.compact
    def __call__(self, x, train: bool):
        s = self.settings
        if s.aux_cell:
            x = ContextualCell(self.genotype, s.agg_size, s.repeats, name=names.AUX_CELL)(x, train)
        return Conv(s.num_classes, 3, padding=1, use_bias=True, name=names.AUX_CLASSIFIER)(x)


class Decoder(nn.Module):
    genotype: G.Genotype
    settings: DecoderSettings = DecoderSettings()

    @nn.compact
    def __call__(self, features, train: bool = False, with_aux: bool = True):
        """``features``: the 4 encoder outputs (NHWC). Returns ``(logits, aux_logits)``; ``aux_logits`` is a
        list of 3 arrays when ``with_aux`` (each at its block's resolution), else ``[]``."""
        g, s = self.genotype, self.settings
        if len(features) != G.NUM_ENCODER_OUTPUTS:
            raise ValueError(f"the decoder takes {G.NUM_ENCODER_OUTPUTS} encoder outputs, got {len(features)}")
        pool = [ConvBN(s.agg_size, 1, name=names.adapter_name(i))(f, train) for i, f in enumerate(features)]
        aux = []
        for b, (i1, i2) in enumerate(g.blocks):
            y1 = ContextualCell(g, s.agg_size, s.repeats, name=names.input_cell_name(b, 1))(pool[i1], train)
            y2 = ContextualCell(g, s.agg_size, s.repeats, name=names.input_cell_name(b, 2))(pool[i2], train)
            out = AggregateCell(s.agg_size, name=names.aggregate_name(b))(y1, y2, train)
            pool.append(out)
            if with_aux or self.is_initializing():
                aux.append(AuxHead(s, g, name=names.aux_head_name(b))(out, train))
        collected = [pool[G.NUM_ENCODER_OUTPUTS + b] for b in g.collected_blocks()]
        logits = MergeCell(s.agg_size, s.num_classes, name=names.MERGE)(collected, train)
        return logits, (aux if with_aux else [])

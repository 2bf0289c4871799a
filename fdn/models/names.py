"""The names of the segmenter's modules and variables: one home for every spelling.

Why one home: a variable's path is an interface. Checkpoints store it, the PyTorch converters map it to the
official keys, the optimisers freeze by it and the universal decoder converts to and from it; spelling
``f"adapt{i + 1}"`` in each of those places made a rename a hunt. The models build their modules with these
helpers and everything else reads paths with them. The names follow the official PyTorch modules (so the
state-dict mapping stays a rule, ``fdn.convert.torch_layout``). Pure strings: importable without flax.
"""

from __future__ import annotations

import re

# ------------------------------------------------------------------------------------------ collections
# Flax's variable collections: learned values, and BatchNorm's running statistics (updated by ``mutable=``).
PARAMS, BATCH_STATS = "params", "batch_stats"

# ------------------------------------------------------------------------------------------ the segmenter
ENCODER = "encoder"
DECODER = "decoder"

# ------------------------------------------------------------------------------------------ leaves
# Conv / BatchNorm variables (Flax's names): conv ``kernel`` (HWIO) and optional ``bias``; BN ``scale`` and
# ``bias`` (params) and ``mean`` / ``var`` (batch_stats).
KERNEL, BIAS, SCALE, MEAN, VAR = "kernel", "bias", "scale", "mean", "var"
# The two children of a ``ConvBN``.
CONV, BN = "conv", "bn"

# ------------------------------------------------------------------------------------------ encoder
STEM = "layer1"  # the first 3x3 conv-BN (the official ``layer1``)
_ENCODER_LAYER = re.compile(r"^layer(\d+)")


def encoder_layer_number(group: int) -> int:
    """The official layer number of MobileNet-v2 group ``group`` (0-based): ``layer2`` .. ``layer8``
    (``layer1`` is the stem)."""
    return group + 2


def encoder_block_name(group: int, j: int) -> str:
    """Inverted residual ``j`` of group ``group``: ``layer{n}_{j}``, ``n = encoder_layer_number(group)``."""
    return f"layer{encoder_layer_number(group)}_{j}"


# Inside an inverted residual block: the optional expansion ``ConvBN``, the depthwise conv and its BN, the
# linear projection and its BN.
EXPAND, DW_CONV, DW_BN, PROJECT_CONV, PROJECT_BN = "expand", "dw_conv", "dw_bn", "project_conv", "project_bn"


def encoder_layer_index(name: str) -> int | None:
    """The official layer number (1 = stem, 2..8 = the groups) of an encoder module name, None if none."""
    m = _ENCODER_LAYER.match(name)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------------------------------ decoder
def adapter_name(level: int) -> str:
    """The conv1x1-BN-ReLU adapting encoder output ``level`` (0..3 = l1..l4): ``adapt1`` .. ``adapt4``."""
    return f"adapt{level + 1}"


def input_cell_name(block: int, k: int) -> str:
    """Contextual cell ``k`` (1 or 2) on block ``block``'s inputs (0-based block)."""
    return f"cells_{block}_op_{k}"


def aggregate_name(block: int) -> str:
    return f"cells_{block}_agg"


def aggregate_branch_name(k: int) -> str:
    """Branch ``k`` (1 or 2) of an aggregate cell."""
    return f"branch_{k}"


def aux_head_name(block: int) -> str:
    return f"aux_clfs_{block}"


def is_aux_head(name: str) -> bool:
    """Whether a decoder child is an auxiliary head (``aux_head_name``): what "without aux" leaves out."""
    return re.fullmatch(PATTERNS["aux_head"], name) is not None


AUX_CELL = "aux_cell"  # inside an aux head: its contextual cell (with ``aux_cell`` settings)
AUX_CLASSIFIER = "aux_clf"  # inside an aux head: its 3x3 classifier
MERGE = "merge"
MERGE_PRE = "pre_clf"  # inside the merge cell: conv1x1-BN-ReLU on the concatenation
MERGE_CLASSIFIER = "conv_clf"  # inside the merge cell: the 3x3 classifier


# ------------------------------------------------------------------------------------------ cell ops
CONV1X1 = "conv1x1"  # the global-average-pooling op's ConvBN


def sep_conv_names(r: int) -> tuple[str, str, str]:
    """Repeat ``r`` of a separable conv op: its depthwise conv, pointwise conv and BN modules."""
    return f"sep_{r}_dw", f"sep_{r}_pw", f"sep_{r}_bn"


def cell_op_index(slot: int) -> int:
    """Slot ``slot`` (0 = op0, then the two ops of pairs 1, 2, 3) -> the ``k`` of its module ``ops_{k}``.

    Modules are numbered after the feature they produce, like the official ``_ops``: feature ``k + 1`` of the
    pool ``[x, op0(x), a1, b1, s1, ...]``, so the pair sums' numbers (3, 6) are skipped."""
    if slot == 0:
        return 0
    layer, which = (slot + 1) // 2, (slot + 1) % 2
    return 3 * layer - 2 + which


def cell_op_name(slot: int) -> str:
    return f"ops_{cell_op_index(slot)}"


# ------------------------------------------------------------------------------------------ reading names back
# Regular expressions matching what the helpers above spell, for code that reads module paths (``fdn.convert``,
# BN folding in ``fdn.serve.export``): one group per number, numbered as in the name (``adapt1`` -> ``1``).
# ``tests/test_house.py`` checks each against its helper, so a rename changes both here or fails there.
PATTERNS = {
    "encoder_block": r"layer(\d+)_(\d+)",
    "adapter": r"adapt(\d+)",
    "input_cell": r"cells_(\d+)_op_(\d+)",
    "aggregate": r"cells_(\d+)_agg",
    "aggregate_branch": r"branch_(\d+)",
    "aux_head": r"aux_clfs_(\d+)",
    "cell_op": r"ops_(\d+)",
    "sep_dw": r"sep_(\d+)_dw",
    "sep_pw": r"sep_(\d+)_pw",
    "sep_bn": r"sep_(\d+)_bn",
}

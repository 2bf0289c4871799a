"""The official PyTorch state-dict layout of the segmenter, and the mapping to and from fdn variables.

fdn names its modules after the official ones, so each fdn variable path maps to exactly one PyTorch key by the
rules below; conversion in both directions is driven by the fdn model's own variable tree, which is how every
missing, extra or wrongly shaped key can be reported by name.
"""

from __future__ import annotations

import re

import numpy as np
from flax import traverse_util

from fdn.models import names as N

# Leaf names: fdn -> PyTorch.
LEAF = {N.KERNEL: "weight", N.SCALE: "weight", N.BIAS: "bias", N.MEAN: "running_mean", N.VAR: "running_var"}

P = N.PATTERNS
_CONV_OR_BN = f"({N.CONV}|{N.BN})"  # the two children of a ConvBN: PyTorch's nn.Sequential indices 0 and 1


def _rule(*parts: str) -> re.Pattern:
    """An anchored pattern over a ``/``-joined fdn module path, from names' spellings and patterns."""
    return re.compile("^" + "/".join(parts) + "$")


def _seq_index(child: str) -> str:
    return "0" if child == N.CONV else "1"


# Op-internal module names (after ``_ops.K``), fdn -> PyTorch.
_OP_RULES = [
    (_rule(P["sep_dw"]), r"op.sep_\1.0"),
    (_rule(P["sep_pw"]), r"op.sep_\1.1"),
    (_rule(P["sep_bn"]), r"op.sep_\1.2"),
    (_rule(N.CONV1X1, N.CONV), "conv1x1.0"),
    (_rule(N.CONV1X1, N.BN), "conv1x1.1"),
    (_rule(N.CONV), "0"),
    (_rule(N.BN), "1"),
]
_ENCODER_BLOCK = {
    f"{N.EXPAND}/{N.CONV}": "conv.0",
    f"{N.EXPAND}/{N.BN}": "conv.1",
    N.DW_CONV: "conv.3",
    N.DW_BN: "conv.4",
    N.PROJECT_CONV: "conv.6",
    N.PROJECT_BN: "conv.7",
}
_STEM = _rule(N.ENCODER, N.STEM, _CONV_OR_BN)
_ENCODER_BLOCK_CHILD = _rule(N.ENCODER, P["encoder_block"], "(.+)")
_ADAPTER = _rule(N.DECODER, P["adapter"], _CONV_OR_BN)
_INPUT_CELL_OP = _rule(N.DECODER, P["input_cell"], P["cell_op"], "(.+)")
_AGGREGATE_BRANCH = _rule(N.DECODER, P["aggregate"], P["aggregate_branch"], _CONV_OR_BN)
_AUX_CELL_OP = _rule(N.DECODER, P["aux_head"], N.AUX_CELL, P["cell_op"], "(.+)")
_AUX_CLASSIFIER = _rule(N.DECODER, P["aux_head"], N.AUX_CLASSIFIER)
_MERGE_PRE = _rule(N.DECODER, N.MERGE, N.MERGE_PRE, _CONV_OR_BN)
_MERGE_CLASSIFIER = f"{N.DECODER}/{N.MERGE}/{N.MERGE_CLASSIFIER}"


class LayoutError(KeyError):
    """A variable path that has no counterpart in the official layout."""

    def __str__(self):
        return str(self.args[0])


def _op_module(rest: str) -> str:
    for pattern, repl in _OP_RULES:
        if pattern.match(rest):
            return pattern.sub(repl, rest)
    raise LayoutError(f"no official name for op module {rest!r}")


def torch_module_name(path: str) -> str:
    """PyTorch module name of an fdn module path (``/``-joined, without the leaf). The PyTorch side is the
    official format's own spelling; the fdn side is read with ``fdn.models.names``."""
    if m := _STEM.match(path):
        return f"encoder.layer1.{_seq_index(m.group(1))}"
    if m := _ENCODER_BLOCK_CHILD.match(path):
        if m.group(3) not in _ENCODER_BLOCK:
            raise LayoutError(f"no official name for encoder module {path!r}")
        return f"encoder.layer{m.group(1)}.{m.group(2)}.{_ENCODER_BLOCK[m.group(3)]}"
    if m := _ADAPTER.match(path):
        return f"decoder.adapt{m.group(1)}.{_seq_index(m.group(2))}"
    if m := _INPUT_CELL_OP.match(path):
        return f"decoder.cells.{m.group(1)}.op_{m.group(2)}._ops.{m.group(3)}.{_op_module(m.group(4))}"
    if m := _AGGREGATE_BRANCH.match(path):
        return f"decoder.cells.{m.group(1)}.agg.branch_{m.group(2)}.{_seq_index(m.group(3))}"
    if m := _AUX_CELL_OP.match(path):
        return f"decoder.aux_clfs.{m.group(1)}.aux_cell._ops.{m.group(2)}.{_op_module(m.group(3))}"
    if m := _AUX_CLASSIFIER.match(path):
        return f"decoder.aux_clfs.{m.group(1)}.aux_clf"
    if m := _MERGE_PRE.match(path):
        return f"decoder.pre_clf.{_seq_index(m.group(1))}"
    if path == _MERGE_CLASSIFIER:
        return "decoder.conv_clf"
    raise LayoutError(f"no official name for module {path!r}")


def torch_key(path: tuple[str, ...]) -> str:
    """PyTorch state-dict key of an fdn variable path like ``('decoder', 'adapt1', 'bn', 'mean')``."""
    *module, leaf = path
    if leaf not in LEAF:
        raise LayoutError(f"no official name for variable {'/'.join(path)!r}")
    return f"{torch_module_name('/'.join(module))}.{LEAF[leaf]}"


def to_torch_array(leaf: str, value: np.ndarray) -> np.ndarray:
    """fdn layout -> PyTorch layout (HWIO kernels -> OIHW; depthwise (kh, kw, 1, C) -> (C, 1, kh, kw))."""
    value = np.asarray(value)
    if leaf == N.KERNEL:
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    return value


def from_torch_array(leaf: str, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if leaf == N.KERNEL:
        if value.ndim != 4:
            raise ValueError(f"a conv weight is 4-D (O, I, kH, kW), got shape {value.shape}")
        return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    return value


def expected_keys(variables) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Map PyTorch key -> (collection, fdn path) for every variable of an fdn model."""
    out = {}
    for (collection, *path), _ in traverse_util.flatten_dict(dict(variables)).items():
        out[torch_key(tuple(path))] = (collection, tuple(path))
    return out

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

# Op-internal module names (after ``_ops.K``), fdn -> PyTorch.
_OP_RULES = [
    (r"^sep_(\d+)_dw$", r"op.sep_\1.0"),
    (r"^sep_(\d+)_pw$", r"op.sep_\1.1"),
    (r"^sep_(\d+)_bn$", r"op.sep_\1.2"),
    (r"^conv1x1/conv$", "conv1x1.0"),
    (r"^conv1x1/bn$", "conv1x1.1"),
    (r"^conv$", "0"),
    (r"^bn$", "1"),
]
_ENCODER_BLOCK = {"expand/conv": "conv.0", "expand/bn": "conv.1", "dw_conv": "conv.3", "dw_bn": "conv.4",
                  "project_conv": "conv.6", "project_bn": "conv.7"}


class LayoutError(KeyError):
    """A variable path that has no counterpart in the official layout."""

    def __str__(self):
        return str(self.args[0])


def _op_module(rest: str) -> str:
    for pattern, repl in _OP_RULES:
        if re.match(pattern, rest):
            return re.sub(pattern, repl, rest)
    raise LayoutError(f"no official name for op module {rest!r}")


def torch_module_name(path: str) -> str:
    """PyTorch module name of an fdn module path (``/``-joined, without the leaf)."""
    m = re.match(r"^encoder/layer1/(conv|bn)$", path)
    if m:
        return f"encoder.layer1.{'0' if m.group(1) == 'conv' else '1'}"
    m = re.match(r"^encoder/layer(\d+)_(\d+)/(.+)$", path)
    if m:
        if m.group(3) not in _ENCODER_BLOCK:
            raise LayoutError(f"no official name for encoder module {path!r}")
        return f"encoder.layer{m.group(1)}.{m.group(2)}.{_ENCODER_BLOCK[m.group(3)]}"
    m = re.match(r"^decoder/adapt(\d)/(conv|bn)$", path)
    if m:
        return f"decoder.adapt{m.group(1)}.{'0' if m.group(2) == 'conv' else '1'}"
    m = re.match(r"^decoder/cells_(\d)_op_(\d)/ops_(\d+)/(.+)$", path)
    if m:
        return f"decoder.cells.{m.group(1)}.op_{m.group(2)}._ops.{m.group(3)}.{_op_module(m.group(4))}"
    m = re.match(r"^decoder/cells_(\d)_agg/branch_(\d)/(conv|bn)$", path)
    if m:
        return f"decoder.cells.{m.group(1)}.agg.branch_{m.group(2)}.{'0' if m.group(3) == 'conv' else '1'}"
    m = re.match(r"^decoder/aux_clfs_(\d)/aux_cell/ops_(\d+)/(.+)$", path)
    if m:
        return f"decoder.aux_clfs.{m.group(1)}.aux_cell._ops.{m.group(2)}.{_op_module(m.group(3))}"
    m = re.match(r"^decoder/aux_clfs_(\d)/aux_clf$", path)
    if m:
        return f"decoder.aux_clfs.{m.group(1)}.aux_clf"
    m = re.match(r"^decoder/merge/pre_clf/(conv|bn)$", path)
    if m:
        return f"decoder.pre_clf.{'0' if m.group(1) == 'conv' else '1'}"
    if path == f"{N.DECODER}/{N.MERGE}/{N.MERGE_CLASSIFIER}":
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

"""torchvision's ImageNet MobileNet-v2 state dict -> fdn encoder variables.

Why: searches and final training start from an ImageNet encoder, and the weights a user can still download are
torchvision's (``mobilenet_v2-7ebf99e0.pth`` and the older ``-b0353104.pth``; both use the layout below). The
official encoder is the same network with one difference: its first inverted residual (expansion 1) has a
32->32 1x1 expansion conv + BN + ReLU6 that torchvision's lacks.

* ``expand_first_block=False`` builds torchvision's layout: every tensor has a source and the encoder
  reproduces torchvision's ``features[3]``, ``[6]``, ``[13]``, ``[17]`` outputs (the four taps) exactly.
* ``expand_first_block=True`` (the official layout, what released and searched models use) needs a value for
  the missing conv. ``expand_init="identity"`` (the default) sets the conv to the identity and the BN to
  an exact identity in eval mode (scale 1, bias 0, mean 0, var ``1 - eps``); the block's input is the stem's
  ReLU6 output, already in [0, 6], so ReLU6 is the identity too and **eval-mode** taps equal torchvision's.
  In train mode that BN normalises with batch statistics, so train-mode outputs differ from torchvision's:
  an approximate initialisation that fine-tuning adapts, not a converted network. ``expand_init="random"``
  leaves the conv at fdn's default initialisation (PyTorch's default, as the official code would have it).

``features.18`` (the 1x1 conv to 1280 channels) and ``classifier.*`` are ImageNet-only: the segmenter has no
use for them; they are reported in ``unused_keys``, not as errors. Any other missing, extra or wrongly shaped
key raises ``ConversionError`` naming every one.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np
from flax import traverse_util

from fdn.convert import torch_layout as L
from fdn.convert.segmenter import ConversionError, unwrap_state_dict
from fdn.models import names as N
from fdn.models.encoder import MOBILENET_V2_GROUPS, MobileNetV2Encoder
from fdn.models.layers import BN_EPSILON

EXPAND_INITS = ("identity", "random")
# Keys of torchvision's ImageNet head: present in every torchvision file, unused by a segmenter.
_UNUSED = re.compile(r"^(features\.18\.|classifier\.)")
# Module names inside an inverted residual, fdn -> torchvision; the first block (no expansion conv) differs.
_BLOCK = {
    f"{N.EXPAND}/{N.CONV}": "conv.0.0",
    f"{N.EXPAND}/{N.BN}": "conv.0.1",
    N.DW_CONV: "conv.1.0",
    N.DW_BN: "conv.1.1",
    N.PROJECT_CONV: "conv.2",
    N.PROJECT_BN: "conv.3",
}
_FIRST_BLOCK = {N.DW_CONV: "conv.0.0", N.DW_BN: "conv.0.1", N.PROJECT_CONV: "conv.1", N.PROJECT_BN: "conv.2"}
_FIRST_BLOCK_NAME = N.encoder_block_name(0, 0)
_FIRST_EXPAND = f"{_FIRST_BLOCK_NAME}/{N.EXPAND}"
_STEM = re.compile(rf"^{N.STEM}/({N.CONV}|{N.BN})$")
_BLOCK_CHILD = re.compile(rf"^({N.PATTERNS['encoder_block']})/(.+)$")


@dataclasses.dataclass
class EncoderImport:
    """What ``encoder_variables_from_torchvision`` produced: the encoder's variables
    ({'params', 'batch_stats'}, numpy) and what it did not take from the file."""

    variables: dict
    unused_keys: list[str]  # ImageNet-head keys in the file, intentionally not used
    not_from_file: list[str]  # fdn variables with no torchvision source (the official first-block expansion)
    expand_init: str | None  # how those were set, None when there were none

    def summary(self) -> str:
        n = sum(v.size for v in jax.tree.leaves(self.variables[N.PARAMS]))
        text = (
            f"{n:,} encoder parameters from torchvision's MobileNet-v2; "
            f"{len(self.unused_keys)} ImageNet-head keys unused (features.18, classifier)"
        )
        if self.not_from_file:
            text += (
                f"; the official first-block expansion conv has no torchvision weights and was set to "
                f"{'an eval-mode identity' if self.expand_init == 'identity' else 'its random init'} "
                "(approximate in train mode)"
            )
        return text


def block_index() -> dict[str, int]:
    """fdn block name (``layer{g}_{j}``) -> torchvision ``features`` index (1..17)."""
    out, i = {}, 1
    for g, (_, _, n, _) in enumerate(MOBILENET_V2_GROUPS):
        for j in range(n):
            out[N.encoder_block_name(g, j)] = i
            i += 1
    return out


_BLOCK_INDEX = block_index()


def torchvision_module_name(path: str) -> str | None:
    """torchvision module of an fdn encoder module path (``/``-joined, no leaf); None for the official-only
    first-block expansion."""
    m = _STEM.match(path)
    if m:
        return f"features.0.{'0' if m.group(1) == N.CONV else '1'}"
    m = _BLOCK_CHILD.match(path)
    if m and m.group(1) in _BLOCK_INDEX:
        block, rest = m.group(1), m.group(4)
        if block == _FIRST_BLOCK_NAME:
            if path.startswith(_FIRST_EXPAND + "/"):
                return None
            table = _FIRST_BLOCK
        else:
            table = _BLOCK
        if rest in table:
            return f"features.{_BLOCK_INDEX[block]}.{table[rest]}"
    raise L.LayoutError(f"no torchvision name for encoder module {path!r}")


def torchvision_key(path: tuple[str, ...]) -> str | None:
    """torchvision state-dict key of an fdn encoder variable path like ``('layer3_0', 'dw_bn', 'mean')``."""
    *module, leaf = path
    name = torchvision_module_name("/".join(module))
    if name is None:
        return None
    if leaf not in L.LEAF:
        raise L.LayoutError(f"no torchvision name for variable {'/'.join(path)!r}")
    return f"{name}.{L.LEAF[leaf]}"


def abstract_encoder_variables(expand_first_block: bool, image_size=(64, 64)):
    model = MobileNetV2Encoder(expand_first_block)
    x = jax.ShapeDtypeStruct((1, *image_size, 3), np.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)


def _identity_expand(abstract_leaf_path, shape, dtype):
    collection, *_, leaf = abstract_leaf_path
    if leaf == N.KERNEL:
        return np.eye(shape[-1], dtype=dtype).reshape(shape)
    if leaf == N.SCALE:
        return np.ones(shape, dtype)
    if leaf == N.VAR:
        return np.full(shape, 1.0 - BN_EPSILON, dtype)  # var + eps = 1: the BN is an exact identity in eval mode
    return np.zeros(shape, dtype)  # bias, mean


def _default_init(leaf, shape, dtype, rng):
    """fdn's (PyTorch's default) initialisation of one variable, drawn with numpy."""
    if leaf == N.KERNEL:
        bound = 1 / np.sqrt(shape[0] * shape[1] * shape[2])
        return rng.uniform(-bound, bound, shape).astype(dtype)
    return (np.ones(shape) if leaf in (N.SCALE, N.VAR) else np.zeros(shape)).astype(dtype)


def encoder_variables_from_torchvision(
    state_dict: dict, expand_first_block: bool = False, expand_init: str = "identity", seed: int = 0
) -> EncoderImport:
    """Variables of ``MobileNetV2Encoder(expand_first_block)`` from a torchvision MobileNet-v2 state dict.

    ``state_dict``: ``{key: array}`` as read by ``fdn.convert.files.read_state_dict`` (torch tensors are
    accepted too; a ``module.`` prefix is stripped). ``seed`` only matters for ``expand_init='random'``.
    """
    if expand_init not in EXPAND_INITS:
        raise ValueError(f"expand_init must be one of {EXPAND_INITS}, got {expand_init!r}")
    # 'input' and keys with '/' are test data stored beside the state dict in fixture .npz files
    sd = {k: v for k, v in unwrap_state_dict(state_dict).items() if "/" not in k and k != "input"}
    abstract = abstract_encoder_variables(expand_first_block)
    flat_abstract = traverse_util.flatten_dict(dict(abstract))
    rng = np.random.default_rng(seed)
    problems, flat, used, not_from_file = [], {}, set(), []
    for (collection, *path), want in flat_abstract.items():
        key = torchvision_key(tuple(path))
        if key is None:
            not_from_file.append("/".join(path))
            if expand_init == "identity":
                flat[(collection, *path)] = _identity_expand((collection, *path), want.shape, want.dtype)
            else:
                flat[(collection, *path)] = _default_init(path[-1], want.shape, want.dtype, rng)
            continue
        if key not in sd:
            problems.append(f"missing key {key}")
            continue
        torch_shape = L.to_torch_array(path[-1], np.zeros(want.shape, np.int8)).shape
        if tuple(sd[key].shape) != tuple(torch_shape):
            problems.append(f"wrong shape for {key}: got {tuple(sd[key].shape)}, expected {tuple(torch_shape)}")
            continue
        flat[(collection, *path)] = np.asarray(L.from_torch_array(path[-1], sd[key]), dtype=want.dtype)
        used.add(key)
        if key.endswith(".running_mean"):
            used.add(key.rsplit(".", 1)[0] + ".num_batches_tracked")
    unused = sorted(k for k in sd if _UNUSED.match(k))
    extra = sorted(set(sd) - used - set(unused))
    problems += [f"unexpected key {k}" for k in extra]
    if problems:
        head = f"the state dict is not torchvision's MobileNet-v2 (width 1.0) layout: {len(problems)} problem(s)"
        raise ConversionError(head + "\n  " + "\n  ".join(problems))
    return EncoderImport(
        traverse_util.unflatten_dict(flat), unused, not_from_file, expand_init if not_from_file else None
    )


def with_encoder(variables: dict, encoder_variables: dict) -> dict:
    """Segmenter ``variables`` with the encoder subtree replaced by ``encoder_variables`` (same structure and
    shapes required: the encoder layouts, ``expand_first_block``, must agree)."""
    out = {}
    for collection, tree in dict(variables).items():
        tree = dict(tree)
        if N.ENCODER in tree:
            old = traverse_util.flatten_dict(dict(tree[N.ENCODER]))
            new = traverse_util.flatten_dict(dict(encoder_variables[collection]))
            if set(old) != set(new):
                diff = sorted("/".join(p) for p in set(old) ^ set(new))
                raise ConversionError(f"encoder layouts differ (expand_first_block?); e.g. {diff[:3]}")
            for p in old:
                if tuple(old[p].shape) != tuple(new[p].shape):
                    raise ConversionError(
                        f"encoder variable {'/'.join(p)} has shape {new[p].shape}, the model expects {old[p].shape}"
                    )
            tree[N.ENCODER] = traverse_util.unflatten_dict({p: np.asarray(new[p], old[p].dtype) for p in old})
        out[collection] = tree
    return out

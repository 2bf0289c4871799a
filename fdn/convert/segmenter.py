"""Official segmenter state dicts <-> fdn variables, with every key accounted for."""

from __future__ import annotations

import numpy as np
from flax import traverse_util

from fdn.convert import torch_layout as L
from fdn.errors import UserError
from fdn.models import names as N
from fdn.models.segmenter import ModelSpec, abstract_variables


class ConversionError(UserError, ValueError):
    """A state dict that does not fit the model: lists every missing, extra and wrongly shaped key."""


# Wrappers seen around official state dicts (checkpoint dicts, DataParallel).
_WRAPPER_KEYS = ("state_dict", "segmenter", "model")


def unwrap_state_dict(sd: dict) -> dict:
    """Strip checkpoint wrappers and DataParallel's ``module.`` prefix; values become numpy arrays."""
    for key in _WRAPPER_KEYS:
        if key in sd and isinstance(sd[key], dict) and not any(k.startswith(("encoder.", "decoder.")) for k in sd):
            sd = sd[key]
    out = {}
    for k, v in sd.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k] = np.asarray(v)
    return out


def variables_from_torch(state_dict: dict, spec: ModelSpec, strict: bool = True) -> dict:
    """fdn variables ({'params', 'batch_stats'}) from an official state dict for the model ``spec``.

    With ``strict`` every key must be used: missing, extra and wrongly shaped keys raise ConversionError,
    naming each one. Test-data keys in the parity files (with '/' in them) are ignored.
    """
    sd = {k: v for k, v in unwrap_state_dict(state_dict).items() if "/" not in k}
    abstract = abstract_variables(spec)
    expected = L.expected_keys(abstract)
    flat_abstract = traverse_util.flatten_dict(dict(abstract))
    problems, flat, used = [], {}, set()
    for key, (collection, path) in expected.items():
        if key not in sd:
            problems.append(f"missing key {key}")
            continue
        want = flat_abstract[(collection, *path)]
        torch_shape = L.to_torch_array(path[-1], np.zeros(want.shape, np.int8)).shape
        if tuple(sd[key].shape) != tuple(torch_shape):
            problems.append(f"wrong shape for {key}: got {tuple(sd[key].shape)}, expected {tuple(torch_shape)}")
            continue
        value = L.from_torch_array(path[-1], sd[key])
        flat[(collection, *path)] = np.asarray(value, dtype=want.dtype)
        used.add(key)
    bn_modules = {k.rsplit(".", 1)[0] for k in expected if k.endswith(".running_mean")}
    used |= {f"{m}.num_batches_tracked" for m in bn_modules}
    extra = sorted(set(sd) - used - set(expected))
    problems += [f"unexpected key {k}" for k in extra]
    if problems and strict:
        head = (
            f"the state dict does not fit {spec.genotype} ({spec.decoder}): {len(problems)} problem(s), listed "
            "below; give the --genotype, --num_classes, --agg_size, --repeats and --aux_cell of the model it was "
            "saved from"
        )
        raise ConversionError(head + "\n  " + "\n  ".join(problems))
    return traverse_util.unflatten_dict(flat)


def torch_from_variables(variables) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays under PyTorch names) of fdn variables; ``num_batches_tracked``
    is written as 0, which the official code never reads (momentum is fixed)."""
    out = {}
    for (_collection, *path), value in traverse_util.flatten_dict(dict(variables)).items():
        key = L.torch_key(tuple(path))
        out[key] = L.to_torch_array(path[-1], np.asarray(value))
        if path[-1] == N.MEAN:
            out[key.rsplit(".", 1)[0] + ".num_batches_tracked"] = np.array(0, np.int64)
    return out

"""Official controller state dict -> fdn controller params, so a user can continue an official search.

The official 2019 controller (``MicroController`` at commit 1a74410) names its tensors ``g_emb`` (1, 1, 100),
``rnn.{weight_ih,weight_hh,bias_ih,bias_hh}_l{0,1}`` (PyTorch ``nn.LSTM``: weights (4H, in), gates
i, f, g, o),
``conn_fcs.{0..5}``, ``ctx_fcs.{0..5}`` and ``linear_op`` (``nn.Linear``: weight (out, in)) and ``enc_op``,
an embedding it never uses. fdn keeps PyTorch's gate order, so the LSTM converts by transposing the weights
and adding the two biases; linear heads transpose their weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fdn import genotype as gt
from fdn.models import names as N

NUM_LAYERS = 2  # nn.LSTM(100, 100, 2)
# Tensors the official controller creates but never reads; accepted and dropped.
UNUSED = ("enc_op.weight",)


def _to_numpy(value: Any) -> np.ndarray:
    """A float32 numpy array from a numpy array, a torch tensor (no torch import needed) or a list."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _linear(sd, name, out_features):
    weight, bias = sd[f"{name}.weight"], sd[f"{name}.bias"]
    if weight.shape[0] != out_features:
        raise ValueError(
            f"{name}.weight has {weight.shape[0]} outputs, fdn's controller expects {out_features} "
            "(the 2020 controller's position heads have 1, 4, 7 entries: only the 2019 one (2, 5, 8) "
            "converts)"
        )
    return {N.KERNEL: weight.T.copy(), N.BIAS: bias.copy()}


def controller_params_from_torch(state_dict: Mapping[str, Any]) -> dict:
    """fdn controller params (as `fdn.agents.controller.init_params` returns them) from an official state dict.

    ``state_dict`` maps the official names to numpy arrays or torch tensors; a ``param/`` prefix (as in the
    parity fixtures) or a ``controller.`` / ``module.`` prefix is stripped. Unknown or missing keys raise.
    """
    sd = {}
    for key, value in state_dict.items():
        for prefix in ("param/", "module.", "controller."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        sd[key] = _to_numpy(value)

    required = {"g_emb", "linear_op.weight", "linear_op.bias"}
    required |= {
        f"rnn.{w}_l{layer}" for layer in range(NUM_LAYERS) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    required |= {f"{head}.{i}.{w}" for head in ("conn_fcs", "ctx_fcs") for i in range(6) for w in ("weight", "bias")}
    missing, unknown = sorted(required - set(sd)), sorted(set(sd) - required - set(UNUSED))
    if missing or unknown:
        raise ValueError(f"not an official 2019 controller state dict: missing {missing}, unexpected {unknown}")

    params: dict[str, Any] = {"start": sd["g_emb"].reshape(-1).copy()}
    for layer in range(NUM_LAYERS):
        params[f"lstm_{layer}"] = {
            "w_ih": sd[f"rnn.weight_ih_l{layer}"].T.copy(),
            "w_hh": sd[f"rnn.weight_hh_l{layer}"].T.copy(),
            "b": sd[f"rnn.bias_ih_l{layer}"] + sd[f"rnn.bias_hh_l{layer}"],
        }
    for i in range(2 * gt.NUM_BLOCKS):
        params[f"conn_{i}"] = _linear(sd, f"conn_fcs.{i}", gt.BLOCK_INPUT_CHOICES[i // 2])
    for i in range(2 * gt.NUM_PAIRS):
        params[f"pos_{i}"] = _linear(sd, f"ctx_fcs.{i}", gt.CELL_POSITION_CHOICES[i // 2])
    params["op"] = _linear(sd, "linear_op", gt.NUM_OPS)

    return params

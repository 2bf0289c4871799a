"""Eval-mode forward of a checkpointed model, jitted and batched: what predict, evaluate and export share."""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fdn.models.resize import resize_bilinear
from fdn.models.segmenter import ModelSpec


def make_forward(spec: ModelSpec, with_aux: bool = True):
    """A jitted ``f(variables, images) -> (logits, aux_list)`` in eval mode (running BN statistics)."""
    model = spec.build()

    @jax.jit
    def forward(variables, images):
        return model.apply(variables, images, train=False, with_aux=with_aux)

    return forward


def predict_batches(spec: ModelSpec, variables, images: np.ndarray, batch_size: int = 8, with_aux: bool = True,
                    precision: str = "highest") -> dict[str, np.ndarray]:
    """``{'logits': (N, h, w, C), 'aux_logits_k': ...}`` at the decoder's own resolution.

    ``precision='highest'`` forces full float32 matmuls/convs on GPUs (TF32 would break parity)."""
    forward = make_forward(spec, with_aux)
    ctx = jax.default_matmul_precision(precision) if precision != "default" else contextlib.nullcontext()
    outs: dict[str, list] = {}
    with ctx:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            pad = batch_size - len(chunk) if len(images) > batch_size else 0
            if pad:  # keep one compiled shape; eval-mode outputs of real images do not depend on the padding
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            logits, aux = forward(variables, jnp.asarray(chunk))
            keep = len(chunk) - pad
            outs.setdefault("logits", []).append(np.asarray(logits)[:keep])
            for k, a in enumerate(aux):
                outs.setdefault(f"aux_logits_{k}", []).append(np.asarray(a)[:keep])
    return {k: np.concatenate(v) for k, v in outs.items()}


@functools.partial(jax.jit, static_argnums=1)
def upsample(logits, size):
    """Bilinear (align_corners=False) upsampling of (N, h, w, C) outputs to the input size."""
    return resize_bilinear(logits, size)

"""Eval-mode forward of a model, jitted and batched: what predict, evaluate, export and fdn.train's evaluations
share. The per-task parts (evaluation sums, prediction maps) come from `fdn.tasks`."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from fdn import tasks
from fdn.models.segmenter import ModelSpec, eval_forward


def make_forward(spec: ModelSpec, with_aux: bool = True):
    """A jitted ``f(variables, images) -> (logits, aux_list)`` in eval mode (running BN statistics)."""
    model = spec.build()

    @jax.jit
    def forward(variables, images):
        return eval_forward(model, variables, images, with_aux)

    return forward


def make_eval_step(model, task: str, num_classes: int, flip_test: bool = False):
    """``f(variables, batch) -> sums`` (to be jitted by the caller): the task's evaluation sums over the batch's
    valid images, at the label resolution (outputs bilinearly upsampled; single scale). ``flip_test``: the
    outputs are the task's merge of the image's and its mirror image's (pose; other tasks refuse)."""
    rules = tasks.get(task)

    def step(variables, batch):
        logits, _ = eval_forward(model, variables, batch["image"])
        if flip_test:
            flipped, _ = eval_forward(model, variables, batch["image"][:, :, ::-1])
            logits = rules.merge_flipped(logits, flipped, batch)
        return rules.eval_sums(logits, batch, num_classes)

    return step


def make_predict(model, task: str):
    """``f(variables, images) -> the task's prediction``: (N, H, W) class maps or depth at the input size, or
    (N, K, 3) joints (x, y, peak) in input pixels (for pictures and ``fdn.predict``)."""
    rules = tasks.get(task)

    def predict(variables, images):
        logits, _ = eval_forward(model, variables, images)
        return rules.predict(logits, images.shape[1:3])

    return predict


def predict_batches(
    spec: ModelSpec,
    variables,
    images: np.ndarray,
    batch_size: int = 8,
    with_aux: bool = True,
    precision: str = "highest",
) -> dict[str, np.ndarray]:
    """``{'logits': (N, h, w, C), 'aux_logits_k': ...}`` at the decoder's own resolution.

    ``precision='highest'`` forces full float32 matmuls/convs on GPUs (TF32 would break parity)."""
    forward = make_forward(spec, with_aux)
    ctx = jax.default_matmul_precision(precision) if precision != "default" else contextlib.nullcontext()
    outs: dict[str, list] = {}
    with ctx:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pad = batch_size - len(chunk) if len(images) > batch_size else 0
            if pad:  # keep one compiled shape; eval-mode outputs of real images do not depend on the padding
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            logits, aux = forward(variables, jnp.asarray(chunk))
            keep = len(chunk) - pad
            outs.setdefault("logits", []).append(np.asarray(logits)[:keep])
            for k, a in enumerate(aux):
                outs.setdefault(f"aux_logits_{k}", []).append(np.asarray(a)[:keep])
    return {k: np.concatenate(v) for k, v in outs.items()}

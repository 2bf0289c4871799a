"""Re-estimating a network's BatchNorm running statistics from data (for randomly initialised encoders).

Why: a freshly initialised MobileNet-v2 (PyTorch-style uniform kernels, BN running mean 0 / var 1) shrinks its
activations by about sqrt(3) per conv in eval mode, so after 50-odd convs its stride-16/32 outputs are ~1e-6 /
~1e-8 and carry nothing a decoder can learn from (measured on the demo data: l4 std 1.6e-8). A pretrained
encoder never has this problem; the demo's random one does. Setting every running statistic to what the
layer sees on real images (the statistics train-mode BN would use) gives eval-mode features of unit scale at
every level while keeping the weights random: the usual data-dependent initialisation.

How: with all running statistics set to 0, one train-mode pass leaves ``momentum * batch_statistic`` in
every running slot (``fdn.models.layers.BatchNorm`` updates ``(1 - m) * running + m * batch``), so dividing by the
momentum recovers each layer's exact batch statistics, computed with every earlier layer normalised by its own
batch statistics. They are averaged over the given batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from fdn import placement
from fdn.models import names
from fdn.models.layers import BatchNorm


def calibrate_batch_stats(apply_train: Callable, variables: dict, batches: Iterable, max_batches: int) -> dict:
    """``variables`` with every ``batch_stats`` leaf replaced by its mean batch statistic over the batches.

    Args:
      apply_train: ``(variables, images) -> new batch_stats`` running the model in train mode (e.g.
        ``lambda v, x: model.apply(v, x, True, mutable=['batch_stats'])[1]['batch_stats']``).
      variables: {'params', 'batch_stats'} of the model.
      batches: dicts with 'image' (B, H, W, 3) float images, or image arrays.
      max_batches: how many batches to use (at least 1).
    """
    momentum = BatchNorm.momentum
    # Zeros made on the host and the sums and the mean as one program each: op by op, every distinct leaf shape
    # would compile a program of its own per operation (~40 small programs, ~3 s of a cold search's set-up).
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variables[names.BATCH_STATS])
    step = jax.jit(
        lambda params, images: jax.tree.map(
            lambda s: s / momentum, apply_train({names.PARAMS: params, names.BATCH_STATS: zeros}, images)
        )
    )
    total, count = None, 0
    for batch in batches:
        if count >= max_batches:
            break
        images = placement.put(batch["image"] if isinstance(batch, dict) else batch, np.float32)
        stats = step(variables[names.PARAMS], images)
        total = stats if total is None else _add(total, stats)
        count += 1
    if count == 0:
        raise ValueError("calibrate_batch_stats: no batches to estimate the BatchNorm statistics from")
    return {**variables, names.BATCH_STATS: _mean(total, np.float32(count))}


@jax.jit
def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


@jax.jit
def _mean(total, count):
    return jax.tree.map(lambda s: s / count, total)

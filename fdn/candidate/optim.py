"""The candidate's optimisers, as the official ``create_optimisers`` builds them (paper.md 3.2, 3.4).

* Stage 1, decoder only: clip the global gradient norm to 3.0, add the *coupled* L2 term ``wd * p`` to the
  clipped gradient (PyTorch ``Adam(weight_decay=...)``, not AdamW), then Adam 3e-3.
* Stage 2: the same for the decoder (a fresh Adam), and for the encoder clip 3.0 + L2 + SGD with momentum 0.9;
  each sub-network is clipped by its own norm.

Which parameters train for a genotype is `fdn.models.trainable`'s rule (shared with the final training); here
the frozen entries of the flat parameter vector (``fdn.candidate.flat``) are zeroed after the L2 term: no
decay, no moments, no update.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fdn.models.trainable import FROZEN, clipped_l2, decoder_labels, encoder_labels

__all__ = [
    "FROZEN",
    "decoder_labels",
    "encoder_labels",
    "elementwise_mask",
    "flat_adam",
    "flat_sgd",
    "trainable_vector",
]


def trainable_vector(flattener, labels) -> np.ndarray:
    """1.0 for every entry of ``flattener``'s flat vector that trains, 0.0 for the ``FROZEN`` ones."""
    return 1.0 - flattener.mask(labels, FROZEN)


def elementwise_mask(mask) -> optax.GradientTransformation:
    """Multiply updates by a 0/1 vector held in the optimiser state (an argument of the compiled step, not a
    multi-megabyte constant baked into it)."""

    def init(params):
        del params
        return MaskState(jnp.asarray(mask, jnp.float32))

    def update(updates, state, params=None):
        del params
        return updates * state.mask, state

    return optax.GradientTransformation(init, update)


class MaskState(NamedTuple):
    mask: jax.Array


def flat_adam(lr: float, weight_decay: float, grad_clip: float, trainable) -> optax.GradientTransformation:
    """Clip -> coupled L2 -> zero the frozen entries -> Adam, on one flat parameter vector."""
    return clipped_l2(grad_clip, weight_decay, optax.chain(elementwise_mask(trainable), optax.adam(lr)))


def flat_sgd(
    lr: float, momentum: float, weight_decay: float, grad_clip: float, trainable
) -> optax.GradientTransformation:
    """Clip -> coupled L2 -> zero the frozen entries -> SGD with momentum (PyTorch's: first buffer = grad)."""
    return clipped_l2(
        grad_clip, weight_decay, optax.chain(elementwise_mask(trainable), optax.sgd(lr, momentum=momentum))
    )

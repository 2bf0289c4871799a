"""The candidate's optimisers, as the official ``create_optimisers`` builds them (paper.md 3.2, 3.4).

* Stage 1, decoder only: clip the global gradient norm to 3.0, add the *coupled* L2 term ``wd * p`` to the
  clipped gradient (PyTorch ``Adam(weight_decay=...)``, not AdamW), then Adam 3e-3.
* Stage 2: the same for the decoder (a fresh Adam), and for the encoder clip 3.0 + L2 + SGD with momentum 0.9;
  each sub-network is clipped by its own norm.

PyTorch optimisers skip parameters whose gradient is ``None``: no update, no weight decay, no moments. In the
candidate those are the adapters of encoder outputs no block reads and, in stage 2, the encoder layers after
the deepest encoder output in use. JAX sees a zero gradient instead, and a zero gradient still decays the
weights and moves Adam's moments, so such parameters are labelled ``frozen`` and their entries of the flat
parameter vector (``fdn.candidate.flat``) are zeroed after the L2 term: no decay, no moments, no update.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from fdn import genotype as G
from fdn.models import names
from fdn.models.encoder import MOBILENET_V2_GROUPS, TAP_GROUPS

FROZEN = "frozen"


def clipped_l2(grad_clip: float, weight_decay: float, inner: optax.GradientTransformation):
    """clip_by_global_norm -> add ``weight_decay * p`` -> ``inner`` (the official order)."""
    parts = []
    if grad_clip and grad_clip > 0:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(inner)
    return optax.chain(*parts)


def _unused_adapters(genotype: G.Genotype) -> set[str]:
    used = set(genotype.encoder_levels_used())
    return {names.adapter_name(i) for i in range(G.NUM_ENCODER_OUTPUTS) if i not in used}


def _unused_encoder_layers(genotype: G.Genotype) -> set[int]:
    """Encoder layer numbers (``layer{n}``, 2..8) after the deepest tap in use: they get no gradient."""
    deepest_group = TAP_GROUPS[max(genotype.encoder_levels_used())]
    return {names.encoder_layer_number(g) for g in range(len(MOBILENET_V2_GROUPS)) if g > deepest_group}


def decoder_labels(decoder_params, genotype: G.Genotype, label: str = "decoder"):
    """``label`` for every decoder parameter, ``frozen`` for the adapters of unused encoder outputs."""
    unused = _unused_adapters(genotype)
    flat = traverse_util.flatten_dict(decoder_params)
    return traverse_util.unflatten_dict({k: FROZEN if k[0] in unused else label for k in flat})


def encoder_labels(encoder_params, genotype: G.Genotype, label: str = "encoder"):
    """``label`` for every encoder parameter, ``frozen`` for the layers no used tap depends on."""
    unused = _unused_encoder_layers(genotype)
    flat = traverse_util.flatten_dict(encoder_params)

    def layer_of(name):
        return names.encoder_layer_index(name) or 0

    return traverse_util.unflatten_dict({k: FROZEN if layer_of(k[0]) in unused else label for k in flat})


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


def flat_sgd(lr: float, momentum: float, weight_decay: float, grad_clip: float,
             trainable) -> optax.GradientTransformation:
    """Clip -> coupled L2 -> zero the frozen entries -> SGD with momentum (PyTorch's: first buffer = grad)."""
    return clipped_l2(grad_clip, weight_decay,
                      optax.chain(elementwise_mask(trainable), optax.sgd(lr, momentum=momentum)))

"""Which segmenter parameters train for a genotype, and the official optimiser order: one rule for the
candidate's stages (`fdn.candidate.optim`) and the final training (`fdn.train.step`).

PyTorch optimisers skip parameters whose gradient is ``None``: no update, no weight decay, no moments. For a
genotype those are the adapters of encoder outputs no block reads and the encoder layers after the deepest
encoder output in use. JAX sees a zero gradient instead, which would still decay the weights and move Adam's
moments, so such parameters are labelled ``FROZEN`` and their optimisers leave them alone.
"""

from __future__ import annotations

import optax
from flax import traverse_util

from fdn import genotype as G
from fdn.models import names
from fdn.models.encoder import TAP_GROUPS

FROZEN = "frozen"


def unused_adapters(genotype: G.Genotype) -> set[str]:
    """Decoder adapter names (``adapt{i}``) of the encoder outputs no block reads."""
    used = set(genotype.encoder_levels_used())
    return {names.adapter_name(i) for i in range(G.NUM_ENCODER_OUTPUTS) if i not in used}


def deepest_encoder_layer(genotype: G.Genotype) -> int:
    """The last encoder layer number (``layer{n}``) a used output depends on; later layers get no gradient."""
    return names.encoder_layer_number(TAP_GROUPS[max(genotype.encoder_levels_used())])


def _encoder_layer(name: str) -> int:
    return names.encoder_layer_index(name) or 0


def decoder_labels(decoder_params, genotype: G.Genotype, label: str = names.DECODER):
    """``label`` for every decoder parameter, ``FROZEN`` for the adapters of unused encoder outputs."""
    unused = unused_adapters(genotype)
    flat = traverse_util.flatten_dict(decoder_params)
    return traverse_util.unflatten_dict({k: FROZEN if k[0] in unused else label for k in flat})


def encoder_labels(encoder_params, genotype: G.Genotype, label: str = names.ENCODER):
    """``label`` for every encoder parameter, ``FROZEN`` for the layers after the deepest used output."""
    last = deepest_encoder_layer(genotype)
    flat = traverse_util.flatten_dict(encoder_params)
    return traverse_util.unflatten_dict({k: FROZEN if _encoder_layer(k[0]) > last else label for k in flat})


def segmenter_labels(params, genotype: G.Genotype):
    """``encoder`` / ``decoder`` / ``FROZEN`` for every parameter of a segmenter ``{'encoder', 'decoder'}``."""
    return {
        name: encoder_labels(sub, genotype) if name == names.ENCODER else decoder_labels(sub, genotype)
        for name, sub in params.items()
    }


def clipped_l2(grad_clip: float, weight_decay: float, inner: optax.GradientTransformation):
    """clip_by_global_norm -> add ``weight_decay * p`` (coupled L2, PyTorch's ``weight_decay``) -> ``inner``:
    the official order; either step is left out when its setting is 0."""
    parts = []
    if grad_clip and grad_clip > 0:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(inner)
    return optax.chain(*parts)

"""Polyak averaging as the official search uses it (paper.md 3.2 and 3.4).

After every optimiser step ``avg <- decay * avg + (1 - decay) * params`` (0.9 over the decoder in stage 1,
0.99 over the whole network in stage 2), starting from the parameters before the first step; at the end of
every epoch the averages are *copied into the live parameters* and training continues from them. Only
parameters are averaged: BatchNorm running statistics keep their live values, as in the official
``apply_polyak``.
"""

from __future__ import annotations

import jax
import optax

from fdn import placement


def init(params):
    """The average starts at a copy of the current parameters (the official ``init_polyak`` copies them; a
    separate buffer also lets a jitted step donate both). `fdn.placement.copy`: no program compiled per leaf shape
    when called outside a trace."""
    return jax.tree.map(placement.copy, params)


def update(avg, params, decay: float):
    """One averaging step: ``decay * avg + (1 - decay) * params`` (``optax.incremental_update``)."""
    return optax.incremental_update(params, avg, step_size=1.0 - decay)


def write_back(avg, params):
    """The parameters to continue with at an epoch end: the averages (``params`` is taken for symmetry)."""
    del params
    return avg

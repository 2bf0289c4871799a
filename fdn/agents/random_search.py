"""Random search: every decision uniform over its own choices, i.e. uniform over the valid genotypes.

The control experiment of a NAS. It has no parameters to learn; `update` only records the results (buffer,
baseline) so that its state, logs and checkpoints look like the other agents'.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fdn.agents import base, controller
from fdn.agents import state as state_lib

_LOG_CHOICES = float(sum(math.log(c) for c in controller.DECISION_CHOICES))


class RandomSearch(base.Agent):
    name = "random"

    def init(self, key):
        return state_lib.new_state({}, {}, state_lib.raw_key(key), self.config.buffer_size)

    @staticmethod
    def _sample(params, key, n):
        del params
        maxval = jnp.asarray(controller.DECISION_CHOICES, jnp.int32)
        decisions = controller.flat_random(
            jax.random.randint, key, (n, controller.NUM_DECISIONS), 0, jnp.tile(maxval, n), jnp.int32
        )
        actions = controller.decisions_to_actions(decisions)
        return actions, jnp.full((n,), -_LOG_CHOICES), jnp.full((n,), _LOG_CHOICES)

    def _update_impl(self, state, actions, log_probs, rewards):
        state = self._record(state, actions, log_probs, rewards)
        state = state.replace(step=state.step + 1)
        return state, {
            "baseline": state.baseline,
            "buffer_fill": jnp.minimum(state.buffer.count, state.buffer.capacity),
        }

    def decision_probs(self, state) -> np.ndarray:
        choices = np.asarray(controller.DECISION_CHOICES)[:, None]
        return np.where(np.arange(controller.MAX_CHOICES)[None] < choices, 1.0 / choices, 0.0)

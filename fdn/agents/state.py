"""The agent state every agent shares, and the bookkeeping done before any policy update.

One `AgentState` pytree holds everything a search needs to resume bit-identically: controller params, the
optimiser state, the reward baseline, the rollout buffer, the RNG key and the update count. Every leaf is an
array (the RNG key is stored as raw ``uint32`` key data), so Orbax saves and restores it as it is.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from fdn import genotype as gt


@struct.dataclass
class Buffer:
    """A circular buffer of the latest ``capacity`` (action vector, log-prob at sampling time, reward).

    ``count`` is how many entries were ever pushed; slot ``count % capacity`` is written next. Slots at or
    past ``count`` were never written: `valid` masks them out. (The official buffer is zero-filled and
    iterates those slots too; see `fdn.agents.ppo` for why that matters.)
    """

    actions: jax.Array  # (capacity, 20) int32
    log_probs: jax.Array  # (capacity,) float32
    rewards: jax.Array  # (capacity,) float32
    count: jax.Array  # () int32

    @classmethod
    def empty(cls, capacity: int) -> Buffer:
        return cls(
            actions=jnp.zeros((capacity, gt.ACTION_SIZE), jnp.int32),
            log_probs=jnp.zeros((capacity,), jnp.float32),
            rewards=jnp.zeros((capacity,), jnp.float32),
            count=jnp.zeros((), jnp.int32),
        )

    @property
    def capacity(self) -> int:
        return self.rewards.shape[0]

    def valid(self) -> jax.Array:
        return jnp.arange(self.capacity) < jnp.minimum(self.count, self.capacity)


@struct.dataclass
class AgentState:
    params: Any  # controller params (an empty dict for random search)
    opt_state: Any  # optax state of the params
    baseline: jax.Array  # () float32: EMA of the rewards seen so far
    buffer: Buffer
    key: jax.Array  # (2,) uint32 raw key data
    step: jax.Array  # () int32: number of `update` calls


def raw_key(key: jax.Array) -> jax.Array:
    """Raw uint32 key data from a typed (``jax.random.key``) or raw (``PRNGKey``) key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key, jnp.uint32)


def new_state(params: Any, opt_state: Any, key: jax.Array, capacity: int) -> AgentState:
    return AgentState(
        params=params,
        opt_state=opt_state,
        baseline=jnp.zeros((), jnp.float32),
        buffer=Buffer.empty(capacity),
        key=raw_key(key),
        step=jnp.zeros((), jnp.int32),
    )


def record(state: AgentState, actions, log_probs, rewards, decay: float) -> AgentState:
    """Pushes k results into the buffer and steps the EMA baseline once per reward, in order.

    The baseline starts at the first reward ever seen, then ``b <- decay * b + (1 - decay) * r``; it is
    updated before the policy update that uses it, as in the official code.
    """

    def push(carry, item):
        baseline, buf = carry
        action, log_prob, reward = item
        baseline = jnp.where(buf.count == 0, reward, decay * baseline + (1.0 - decay) * reward)
        slot = buf.count % buf.capacity
        buf = buf.replace(
            actions=buf.actions.at[slot].set(action),
            log_probs=buf.log_probs.at[slot].set(log_prob),
            rewards=buf.rewards.at[slot].set(reward),
            count=buf.count + 1,
        )
        return (baseline, buf), None

    items = (
        jnp.asarray(actions, jnp.int32).reshape(-1, gt.ACTION_SIZE),
        jnp.asarray(log_probs, jnp.float32).reshape(-1),
        jnp.asarray(rewards, jnp.float32).reshape(-1),
    )
    (baseline, buf), _ = jax.lax.scan(push, (state.baseline, state.buffer), items)
    return state.replace(baseline=baseline, buffer=buf)

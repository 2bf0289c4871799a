"""What every agent does the same way: make its state, propose genotypes, turn device results into Python.

An agent is a small object holding its config and jitted functions; all that changes lives in the
`AgentState` pytree it is handed and returns, so a search loop is::

    agent = make_agent("ppo", config)
    state = agent.init(key)
    genotypes, state, info = agent.propose(state, n)
    ...train the candidates, get their rewards...
    state, metrics = agent.update(state, info["actions"], info["log_probs"], rewards)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from fdn import genotype as gt
from fdn.agents import controller
from fdn.agents import state as state_lib


def default_config() -> ml_collections.ConfigDict:
    """Settings of the policy agents; the defaults are the official PPO's."""
    return ml_collections.ConfigDict(
        dict(
            learning_rate=1e-4,  # Adam
            max_grad_norm=2.0,  # global-norm gradient clip before Adam
            baseline_decay=0.95,  # EMA of rewards; advantage = reward - baseline
            entropy_coef=0.0,  # weight of the policy entropy bonus (the official code computes it, weight 0)
            clip_epsilon=0.1,  # PPO ratio clip
            buffer_size=100,  # PPO rollout buffer: the latest results
            minibatch_size=1,  # PPO: 1 = official (100 Adam steps per update); larger = fewer, faster steps
            ppo_epochs=1,  # PPO passes over the buffer per update
        )
    )


class Agent:
    """Base of the agents: `init`, `propose`, `update` (the last is each agent's own)."""

    name = "agent"

    def __init__(self, config: ml_collections.FrozenConfigDict):
        self.config = config
        # Per-leaf, not optax.flatten: flattening compiles ~2 s faster on XLA:CPU but runs the 100-step
        # update 20-100 % slower (the concatenation every Adam step).
        self.tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))

    # Agents of the same class and settings are equal, so they share compiled functions (`_jitted_*`).
    def _identity(self):
        return type(self), tuple(sorted(self.config.items()))

    def __eq__(self, other):
        return isinstance(other, Agent) and self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    def __repr__(self):
        return f"{type(self).__name__}({dict(self._identity()[1])})"

    # ------------------------------------------------------------------------------------------ state
    def init(self, key: jax.Array) -> state_lib.AgentState:
        key = state_lib.raw_key(key)
        init_key, key = jax.random.split(key)
        params = controller.init_params(init_key)
        return state_lib.new_state(params, self.tx.init(params), key, self.config.buffer_size)

    # --------------------------------------------------------------------------------------- propose
    @staticmethod
    def _sample(params, key, n):
        return controller.sample(params, key, n)

    def propose(self, state, n: int = 1) -> tuple[list[gt.Genotype], state_lib.AgentState, dict[str, Any]]:
        """n genotypes to try; ``info`` holds their ``actions``, ``log_probs`` and ``entropies`` (numpy)."""
        state, out = _jitted_propose(self._sample, state, n)
        actions, log_probs, entropies = jax.device_get(out)
        info = {"actions": actions, "log_probs": log_probs, "entropies": entropies}
        return [gt.Genotype.from_actions(a) for a in actions], state, info

    # ---------------------------------------------------------------------------------------- update
    def update(self, state, actions, log_probs, rewards) -> tuple[state_lib.AgentState, dict[str, jax.Array]]:
        """Feeds back k results (actions (k, 20) or Genotypes, sampling-time log-probs (k,), rewards (k,)).

        One jitted call (compiled once per k); the metrics stay on the device (``jax.device_get`` them when
        logging).
        """
        actions = jnp.asarray(controller.as_actions(actions))
        log_probs = jnp.asarray(log_probs, jnp.float32).reshape(-1)
        rewards = jnp.asarray(rewards, jnp.float32).reshape(-1)
        if not actions.shape[0] == log_probs.shape[0] == rewards.shape[0]:
            raise ValueError(
                f"update needs as many actions, log-probs and rewards, got "
                f"{actions.shape[0]}, {log_probs.shape[0]}, {rewards.shape[0]}"
            )
        return _jitted_update(self, state, actions, log_probs, rewards)

    def warm_up(self, state) -> None:
        """Compiles ``update`` for one result (what the search feeds back per candidate), on dummy data whose
        result is dropped: the search calls it during its set-up so that the first candidate does not wait
        for it (~3 s on a 2-core CPU)."""
        dummy = np.zeros((1, gt.ACTION_SIZE), np.int32)
        jax.block_until_ready(self.update(state, dummy, [0.0] * len(dummy), [0.0] * len(dummy)))

    def _update_impl(self, state, actions, log_probs, rewards):
        raise NotImplementedError

    def _record(self, state, actions, log_probs, rewards):
        return state_lib.record(state, actions, log_probs, rewards, self.config.baseline_decay)

    # ------------------------------------------------------------------------------------- inspection
    def decision_probs(self, state) -> np.ndarray:
        """The policy's (19, 11) decision probabilities (rows in LSTM order; 0 past a row's choices)."""
        return np.asarray(controller.decision_probs(state.params))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_propose(sample_fn, state, n):
    """Keyed on the sampling function, so the policy agents (PPO, REINFORCE) share one compile."""
    key, sample_key = jax.random.split(state.key)
    return state.replace(key=key), sample_fn(state.params, sample_key, n)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_update(agent, state, actions, log_probs, rewards):
    return agent._update_impl(state, actions, log_probs, rewards)

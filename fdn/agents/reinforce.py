"""REINFORCE with the PPO agent's EMA baseline: one Adam step on ``-mean(log pi(a) * (r - b))`` per update.

The official REINFORCE is broken (its ``update`` unpacks the wrong number of values), so this is the
textbook estimator with the settings the official code gives it: Adam(1e-4), global-norm clip 2.0, the same
baseline (EMA 0.95 from the first reward, updated with the new rewards before the step). The log-probs are
recomputed under the current params, which are the sampling params when, as in a search, every proposal is
followed by its update (on-policy). The results also go into the buffer so all agents share one state shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fdn.agents import base, controller


def reinforce_loss(params, actions, advantages, entropy_coef):
    table = controller.decision_log_probs(params)
    log_probs = controller.log_prob_of_actions(table, actions)
    entropy = controller.policy_entropy(table)
    policy_loss = -jnp.mean(log_probs * advantages)
    return policy_loss - entropy_coef * entropy, (policy_loss, entropy)


class Reinforce(base.Agent):
    name = "reinforce"

    def _update_impl(self, state, actions, log_probs, rewards):
        state = self._record(state, actions, log_probs, rewards)
        advantages = rewards - state.baseline
        (_, (policy_loss, entropy)), grads = jax.value_and_grad(reinforce_loss, has_aux=True)(
            state.params, actions, advantages, self.config.entropy_coef
        )
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        state = state.replace(
            params=optax.apply_updates(state.params, updates), opt_state=opt_state, step=state.step + 1
        )
        metrics = {
            "loss": policy_loss,
            "entropy": entropy,
            "grad_norm": optax.tree.norm(grads),
            "baseline": state.baseline,
            "advantage": advantages[-1],
            "buffer_fill": jnp.minimum(state.buffer.count, state.buffer.capacity),
        }
        return state, metrics

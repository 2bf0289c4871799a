"""PPO as the official search runs it, as one jitted update.

After every result: the baseline (EMA 0.95 of rewards, started at the first reward) takes the new reward,
the (actions, sampling-time log-prob, reward) goes into a circular buffer of the latest 100, then one pass
over the buffer in mini-batches (of 1 by default, i.e. up to 100 Adam steps) minimises the clipped surrogate
``-min(ratio * A, clip(ratio, 1 - 0.1, 1 + 0.1) * A) - entropy_coef * H`` with ``A = reward - baseline``,
Adam(1e-4) after a global-norm clip of 2.0. The mini-batches are a random permutation of the buffer.

The whole pass is a `lax.scan` over mini-batches inside the one jitted update, and the 19 decision
distributions are one LSTM run per Adam step (see `fdn.agents.controller`), so a full-buffer update at mini-batch 1
(100 Adam steps) costs 0.23-0.49 s on a loaded 2-core CPU against the official 1.4-1.8 s (`python -m fdn.bench
controller`). ``minibatch_size`` > 1 is the faster option (fewer, larger Adam steps: 28-46 ms at 10, 7-9 ms
at 100); it changes the optimisation (fewer steps of the same learning rate), so it is not the official
schedule. The first call compiles (10-30 s on that CPU).

Unfilled slots: the official buffer is zero-initialised and its pass always visits all 100 slots, so while
the buffer fills, the zero slots (action all zeros, old log-prob 0, reward 0) are visited too. Their
gradient is zero (the ratio is far below 0.9, so the clip is active), but each still takes an Adam step:
the moment estimates decay and the parameters keep moving along the old momentum, and the bias correction
counts those steps. fdn masks unfilled slots out instead: they are ordered after the filled ones and a
mini-batch with no filled slot skips its Adam step entirely (``lax.cond``), so the first 99 updates take
1, 2, ..., 99 Adam steps rather than 100. Once the buffer is full (after 100 results) the two agree.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from fdn.agents import base, controller


def surrogate_loss(params, actions, old_log_probs, advantages, mask, clip_epsilon, entropy_coef):
    """Masked mean of the clipped PPO objective (negated) minus the entropy bonus; also returns stats."""
    table = controller.decision_log_probs(params)
    new_log_probs = controller.log_prob_of_actions(table, actions)
    entropy = controller.policy_entropy(table)
    ratio = jnp.exp(new_log_probs - old_log_probs)
    clipped = jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    surrogate = jnp.minimum(ratio * advantages, clipped * advantages)
    n = jnp.maximum(mask.sum(), 1)
    action_loss = -jnp.sum(jnp.where(mask, surrogate, 0.0)) / n
    clip_fraction = jnp.sum(jnp.where(mask, jnp.abs(ratio - 1.0) > clip_epsilon, False)) / n
    return action_loss - entropy_coef * entropy, (action_loss, entropy, clip_fraction)


def minibatch_schedule(key, valid, minibatch_size, epochs):
    """Buffer slot indices (num_minibatches, minibatch_size) and their mask for ``epochs`` passes.

    Each pass is a fresh random permutation with the filled slots first and the unfilled ones after them
    (masked), padded to whole mini-batches with masked copies of slot 0; so every filled slot is visited
    once per pass and a mini-batch holds unfilled slots only at the end of a pass.
    """
    capacity = valid.shape[0]
    num_mb = math.ceil(capacity / minibatch_size)
    in_range = jnp.arange(num_mb * minibatch_size) < capacity
    orders, masks = [], []
    for epoch_key in jax.random.split(key, epochs):
        noise = jax.random.uniform(epoch_key, (capacity,))
        order = jnp.pad(jnp.argsort(jnp.where(valid, noise, 2.0)), (0, num_mb * minibatch_size - capacity))
        orders.append(order)
        masks.append(valid[order] & in_range)
    shape = (epochs * num_mb, minibatch_size)
    return jnp.concatenate(orders).reshape(shape), jnp.concatenate(masks).reshape(shape)


class PPO(base.Agent):
    name = "ppo"

    def _update_impl(self, state, actions, log_probs, rewards):
        cfg = self.config
        state = self._record(state, actions, log_probs, rewards)
        buf = state.buffer
        advantages = buf.rewards - state.baseline

        key, perm_key = jax.random.split(state.key)
        order, mask = minibatch_schedule(perm_key, buf.valid(), cfg.minibatch_size, cfg.ppo_epochs)

        grad_fn = jax.value_and_grad(surrogate_loss, has_aux=True)

        def adam_step(carry, idx, m):
            params, opt_state = carry
            (_, (action_loss, entropy, clip_fraction)), grads = grad_fn(
                params, buf.actions[idx], buf.log_probs[idx], advantages[idx], m, cfg.clip_epsilon, cfg.entropy_coef
            )
            updates, opt_state = self.tx.update(grads, opt_state, params)
            stats = jnp.stack([action_loss, entropy, clip_fraction, optax.tree.norm(grads), 1.0])
            return (optax.apply_updates(params, updates), opt_state), stats

        def body(carry, batch):
            idx, m = batch
            return jax.lax.cond(m.any(), lambda c: adam_step(c, idx, m), lambda c: (c, jnp.zeros(5)), carry)

        (params, opt_state), stats = jax.lax.scan(body, (state.params, state.opt_state), (order, mask))
        steps = jnp.maximum(stats[:, 4].sum(), 1.0)
        mean = stats.sum(0) / steps
        state = state.replace(params=params, opt_state=opt_state, key=key, step=state.step + 1)
        capacity = buf.capacity
        metrics = {
            "loss": mean[0],
            "entropy": mean[1],
            "clip_fraction": mean[2],
            "grad_norm": mean[3],
            "adam_steps": stats[:, 4].sum().astype(jnp.int32),
            "baseline": state.baseline,
            "advantage": rewards[-1] - state.baseline,
            "buffer_fill": jnp.minimum(buf.count, capacity),
        }
        return state, metrics

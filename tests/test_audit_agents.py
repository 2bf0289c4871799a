"""Audit: the entropy bonus of the PPO and REINFORCE losses (entropy_coef > 0) and REINFORCE's loss value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn.agents import controller, make_agent, ppo, reinforce


@pytest.fixture(scope="module")
def policy():
    """Params, 4 sampled action vectors, and the (19, 11) log-prob table in float64."""
    params = controller.init_params(jax.random.PRNGKey(0))
    actions, _, _ = controller.sample(params, jax.random.PRNGKey(1), 1024)  # the batch size other tests compile
    table = np.asarray(controller.decision_log_probs(params), np.float64)
    return params, actions[:4], table


def _entropy(table):
    """Sum over the 19 decisions of -sum p log p over each decision's own choices."""
    return -sum(float(np.sum(np.exp(row[:c]) * row[:c])) for row, c in zip(table, controller.DECISION_CHOICES))


def _log_prob(table, action):
    return sum(table[k, action[j]] for k, j in enumerate(controller.DECISION_ORDER))


def test_ppo_entropy_bonus_lowers_the_loss(policy):
    # loss = action_loss - coef * H: with coef 0.5 the loss is the coef-0 loss minus H / 2, and the action loss
    # reported in the stats is unchanged.
    params, actions, table = policy
    old = jnp.zeros(4)
    adv = jnp.asarray([1.0, -2.0, 3.0, 0.5])
    mask = jnp.ones(4, bool)
    fn = jax.jit(ppo.surrogate_loss, static_argnums=(5, 6))
    loss0, (action0, entropy, _) = fn(params, actions, old, adv, mask, 0.1, 0.0)
    loss5, (action5, _, _) = fn(params, actions, old, adv, mask, 0.1, 0.5)
    h = _entropy(table)
    assert float(entropy) == pytest.approx(h, rel=1e-5)
    assert float(action5) == pytest.approx(float(action0), rel=1e-6)
    assert float(loss5) == pytest.approx(float(loss0) - 0.5 * h, rel=1e-5)


def test_reinforce_loss_by_hand(policy):
    # policy loss = -mean(log pi(a_i) * A_i), total = policy loss - coef * H; log pi(a) summed over the table.
    params, actions, table = policy
    adv = np.array([1.0, -2.0, 3.0, 0.5])
    lp = np.array([_log_prob(table, a) for a in np.asarray(actions)])
    want_policy = -float(np.mean(lp * adv))
    fn = jax.jit(reinforce.reinforce_loss, static_argnums=3)
    loss, (policy_loss, entropy) = fn(params, actions, jnp.asarray(adv, jnp.float32), 0.25)
    assert float(policy_loss) == pytest.approx(want_policy, rel=1e-5)
    assert float(entropy) == pytest.approx(_entropy(table), rel=1e-5)
    assert float(loss) == pytest.approx(want_policy - 0.25 * _entropy(table), rel=1e-5)


def test_ppo_update_applies_the_configured_clip():
    # Two results in one update, rewards (0, 1): baseline 0 then 0.95 * 0 + 0.05 * 1 = 0.05, advantages (-0.05, 0.95).
    # Sampling-time log-probs set so that the ratios are e^-0.15 = 0.86 (A < 0) and e^0.15 = 1.16 (A > 0): both
    # outside [0.9, 1.1], so min(r A, clip(r) A) takes the clipped, constant term; the gradient is zero at every
    # Adam step and the params do not move. (With a clip of 0.2 both ratios would be inside and the params move.)
    agent = make_agent("ppo", {"buffer_size": 4})
    state = agent.init(jax.random.PRNGKey(2))
    _, state, info = agent.propose(state, 2)
    old = info["log_probs"] + np.array([0.15, -0.15], np.float32)
    new, metrics = agent.update(state, info["actions"], old, [0.0, 1.0])
    assert int(metrics["adam_steps"]) == 2 and float(metrics["clip_fraction"]) == 1.0
    for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        np.testing.assert_array_equal(x, y)
    # the same results inside a wider clip do move them
    wide = make_agent("ppo", {"buffer_size": 4, "clip_epsilon": 0.2})
    moved, _ = wide.update(state, info["actions"], old, [0.0, 1.0])
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(moved.params)))


def test_minibatch_order_is_shuffled_per_pass():
    # 10 filled slots, mini-batch 1, two passes: each pass is a permutation of 0..9, not the buffer order, and the
    # two passes differ (a fixed key: the chance that either holds by accident is ~1/10!).
    order, mask = ppo.minibatch_schedule(jax.random.PRNGKey(0), jnp.ones(10, bool), 1, 2)
    first, second = np.asarray(order[:10, 0]), np.asarray(order[10:, 0])
    assert sorted(first) == sorted(second) == list(range(10)) and bool(np.asarray(mask).all())
    assert list(first) != list(range(10)) and list(first) != list(second)

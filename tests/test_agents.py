"""Agents: bookkeeping (baseline, buffer, masking), the PPO step against a plain loop, learning, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdn import genotype as gt
from fdn.agents import AgentState, controller, default_config, make_agent, ppo, restore_agent_state, save_agent_state

TARGET_OP = 3
OP_ACTIONS = [1, 4, 5, 8, 9, 12, 13]  # op0 and the pairs' o1, o2 in the action vector
OP_DECISIONS = [6, 9, 10, 13, 14, 17, 18]  # the same decisions in LSTM order


def op_reward(actions):
    """Fraction of the 7 op decisions that chose TARGET_OP: a reward favouring one op."""
    return (np.asarray(actions)[:, OP_ACTIONS] == TARGET_OP).mean(1)


def target_prob(agent, state):
    return float(agent.decision_probs(state)[OP_DECISIONS, TARGET_OP].mean())


def leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
        np.array_equal(x, y) for x, y in zip(la, lb)
    )


@pytest.fixture(scope="module")
def ppo_agent():
    return make_agent("ppo")  # the official settings: buffer 100, mini-batch 1


# ---------------------------------------------------------------------------------------------- config
def test_make_agent_validates():
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("a2c")
    with pytest.raises(ValueError, match="learnig_rate"):
        make_agent("ppo", {"learnig_rate": 1e-3})
    assert make_agent("ppo") == make_agent("ppo", {"clip_epsilon": 0.1})  # equal agents share compiles
    assert default_config().minibatch_size == 1 and default_config().buffer_size == 100


# ------------------------------------------------------------------------------- baseline and buffer
def test_baseline_and_circular_buffer():
    agent = make_agent("random", {"buffer_size": 4})
    state = agent.init(jax.random.PRNGKey(0))
    rewards = [0.5, 1.0, 0.0, 0.25, 0.75, 0.125]
    expected = None
    for r in rewards:
        _, state, info = agent.propose(state, 1)
        state, metrics = agent.update(state, info["actions"], info["log_probs"], [r])
        expected = r if expected is None else 0.95 * expected + 0.05 * r
        np.testing.assert_allclose(metrics["baseline"], expected, rtol=1e-6)
    buf = state.buffer
    assert int(buf.count) == 6 and buf.valid().all()
    np.testing.assert_allclose(buf.rewards, [0.75, 0.125, 0.0, 0.25])  # slots 0, 1 overwritten
    # k results in one call: the baseline steps once per reward, in order
    state2 = agent.init(jax.random.PRNGKey(0))
    _, state2, info = agent.propose(state2, 6)
    state2, metrics = agent.update(state2, info["actions"], info["log_probs"], rewards)
    np.testing.assert_allclose(metrics["baseline"], expected, rtol=1e-6)


def test_random_search_is_uniform_and_valid():
    agent = make_agent("random")
    state = agent.init(jax.random.PRNGKey(1))
    genotypes, state, info = agent.propose(state, 2000)
    assert all(isinstance(g, gt.Genotype) for g in genotypes)
    d = np.asarray(controller.actions_to_decisions(info["actions"]))
    for k, choices in enumerate(controller.DECISION_CHOICES):
        freq = np.bincount(d[:, k], minlength=choices) / len(d)
        assert len(freq) == choices
        np.testing.assert_allclose(freq, 1 / choices, atol=0.05)
    np.testing.assert_allclose(info["log_probs"], -sum(np.log(controller.DECISION_CHOICES)), rtol=1e-6)


# --------------------------------------------------------------------------------------------- PPO
def test_surrogate_loss_is_the_clipped_objective():
    params = controller.init_params(jax.random.PRNGKey(0))
    actions, log_probs, _ = controller.sample(params, jax.random.PRNGKey(1), 1024)  # the compile others use
    actions, log_probs = actions[:4], log_probs[:4]
    old = log_probs + jnp.asarray([0.0, 0.5, -0.5, 0.05])  # ratios 1, e^-0.5, e^0.5, e^-0.05
    adv = jnp.asarray([1.0, -2.0, 3.0, 0.5])
    mask = jnp.asarray([True, True, True, False])
    loss, (action_loss, _, clip_fraction) = jax.jit(ppo.surrogate_loss, static_argnums=(5, 6))(
        params, actions, old, adv, mask, 0.1, 0.0
    )
    ratio = np.exp(np.asarray(log_probs - old, np.float64))
    surr = np.minimum(ratio * adv, np.clip(ratio, 0.9, 1.1) * adv)
    np.testing.assert_allclose(loss, -surr[:3].mean(), rtol=1e-5)
    np.testing.assert_allclose(clip_fraction, 2 / 3)


def test_minibatch_schedule_visits_filled_slots_once():
    valid = jnp.arange(10) < 7
    order, mask = ppo.minibatch_schedule(jax.random.PRNGKey(0), valid, 4, 2)
    assert order.shape == mask.shape == (6, 4)
    order, mask = np.asarray(order), np.asarray(mask)
    for epoch in (slice(0, 3), slice(3, 6)):
        assert sorted(order[epoch][mask[epoch]].tolist()) == list(range(7))  # each filled slot once per pass
    assert mask[:, :].sum() == 14 and not mask[2].any() and not mask[5].any()  # unfilled ones last


def test_ppo_update_equals_plain_loop(ppo_agent):
    """The scanned, masked update = one Adam step per filled slot, in the schedule's order (mini-batch 1)."""
    state = ppo_agent.init(jax.random.PRNGKey(0))
    for r in ([0.2], [0.6], [0.1]):
        _, state, info = ppo_agent.propose(state, 1)
        prev, (state, metrics) = state, ppo_agent.update(state, info["actions"], info["log_probs"], r)
    assert int(metrics["adam_steps"]) == 3  # unfilled slots take no Adam step

    # replay the last update by hand
    buf = state.buffer
    baseline = float(state.baseline)
    _, perm_key = jax.random.split(prev.key)
    order, mask = ppo.minibatch_schedule(perm_key, buf.valid(), 1, 1)

    @jax.jit
    def adam_step(params, opt_state, idx):
        g = jax.grad(
            lambda p: ppo.surrogate_loss(
                p,
                buf.actions[idx][None],
                buf.log_probs[idx][None],
                (buf.rewards[idx] - baseline)[None],
                jnp.ones(1, bool),
                0.1,
                0.0,
            )[0]
        )(params)
        updates, opt_state = ppo_agent.tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = prev.params, prev.opt_state
    for idx in np.asarray(order[np.asarray(mask)[:, 0], 0]):
        params, opt_state = adam_step(params, opt_state, idx)
    for x, y in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8)


def test_first_update_has_zero_advantage(ppo_agent):
    state = ppo_agent.init(jax.random.PRNGKey(4))
    _, state1, info = ppo_agent.propose(state, 1)
    state1, metrics = ppo_agent.update(state1, info["actions"], info["log_probs"], [0.7])
    assert float(metrics["advantage"]) == 0.0 and float(metrics["baseline"]) == pytest.approx(0.7)
    assert leaves_equal(state.params, state1.params)  # a zero gradient moves Adam nowhere


def test_ppo_learns_to_prefer_an_op(ppo_agent):
    state = ppo_agent.init(jax.random.PRNGKey(0))
    before = target_prob(ppo_agent, state)
    for _ in range(60):
        _, state, info = ppo_agent.propose(state, 1)
        state, _ = ppo_agent.update(state, info["actions"], info["log_probs"], op_reward(info["actions"]))
    after = target_prob(ppo_agent, state)
    assert before < 0.12 and after > 2 * before, (before, after)


def test_reinforce_learns_to_prefer_an_op():
    agent = make_agent("reinforce")
    state = agent.init(jax.random.PRNGKey(0))
    before = target_prob(agent, state)
    for _ in range(200):
        _, state, info = agent.propose(state, 1)
        state, _ = agent.update(state, info["actions"], info["log_probs"], op_reward(info["actions"]))
    after = target_prob(agent, state)
    assert after > 2 * before, (before, after)


# ------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("name, config", [("ppo", {"minibatch_size": 25}), ("random", None)])
def test_resume_after_save_restore_is_bit_identical(name, config, tmp_path):
    """Also the test of mini-batches > 1: it learns, and a full buffer takes 4 steps of 25."""
    agent = make_agent(name, config)
    state = agent.init(jax.random.PRNGKey(5))

    def run(state, steps):
        proposed = []
        for _ in range(steps):
            genotypes, state, info = agent.propose(state, 1)
            state, metrics = agent.update(state, genotypes, info["log_probs"], op_reward(info["actions"]))
            proposed.append(info["actions"])
        if name == "ppo" and int(state.buffer.count) >= 100:
            assert int(metrics["adam_steps"]) == 4
        return state, np.stack(proposed)

    before = target_prob(agent, state)
    state, _ = run(state, 120)
    save_agent_state(tmp_path / "agent", state)
    straight, straight_actions = run(state, 3)
    restored = restore_agent_state(tmp_path / "agent", agent.init(jax.random.PRNGKey(99)))
    assert isinstance(restored, AgentState) and leaves_equal(restored, state)
    resumed, resumed_actions = run(restored, 3)
    np.testing.assert_array_equal(resumed_actions, straight_actions)
    assert leaves_equal(resumed, straight)
    if name == "ppo":
        assert target_prob(agent, resumed) > 2 * before
        assert all(bool(np.isfinite(x).all()) for x in jax.tree_util.tree_leaves(resumed.params))


@pytest.mark.parametrize("name", ["ppo", "reinforce", "random"])
def test_warm_up_compiles_the_searchs_update_and_changes_no_state(name):
    """``warm_up`` (run during the search's set-up) compiles ``update`` for one result, the search's call: the
    first real update then compiles nothing; the state it is given is left as it was."""
    from fdn.agents import base

    agent = make_agent(name, {"buffer_size": 7})  # settings of its own: a compile no other test made
    state = agent.init(jax.random.key(3))
    before = jax.tree.map(np.asarray, jax.tree.leaves(state))
    agent.warm_up(state)
    compiled = base._jitted_update._cache_size()
    genotypes, state2, info = agent.propose(state, 1)
    agent.update(state2, genotypes, info["log_probs"], [0.5])
    assert base._jitted_update._cache_size() == compiled
    for got, want in zip(jax.tree.leaves(state), before):
        np.testing.assert_array_equal(np.asarray(got), want)

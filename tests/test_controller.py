"""The controller: parity with the official 2019 controller, validity of samples, the policy's maths."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn import genotype as gt
from fdn.agents import controller
from fdn.convert import controller_params_from_torch

N = 1024  # one batch size for sampling throughout, so the tests compile `sample` once
PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity" / "controller_2019_seed1.npz"


@pytest.fixture(scope="module")
def params():
    return controller.init_params(jax.random.PRNGKey(0))


# ------------------------------------------------------------------------------------------------ parity
@pytest.fixture(scope="module")
def fixture():
    if not PARITY.exists():
        pytest.skip(f"parity fixture {PARITY} not present")
    data = np.load(PARITY)
    return {k: data[k] for k in data.files}


def test_parity_with_official_evaluate(fixture):
    params = controller_params_from_torch({k: v for k, v in fixture.items() if k.startswith("param/")})
    meta = json.loads(str(fixture["meta_json"]))
    assert meta["settings"]["cell_position_choices"] == list(gt.CELL_POSITION_CHOICES)
    for genotypes in (fixture["actions"], meta["genotypes"], [gt.parse(g) for g in meta["genotypes"]]):
        log_probs, entropies = controller.log_prob_and_entropy(params, genotypes)
        assert log_probs.shape == entropies.shape == (16,)
        np.testing.assert_allclose(log_probs, fixture["log_prob"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(entropies, fixture["entropy"], rtol=0, atol=1e-5)


def test_fixture_actions_are_fdn_layout(fixture):
    meta = json.loads(str(fixture["meta_json"]))
    for row, g in zip(fixture["actions"], meta["genotypes"]):
        assert gt.Genotype.from_actions(row) == gt.parse(g)


# ------------------------------------------------------------------------------------------------ params
def test_init_is_uniform_and_shaped(params):
    # The 2019 controller's 169,971 less its unused ``enc_op`` table (1,100) and less PyTorch's second LSTM bias
    # per layer (2 x 400; only their sum matters). paper.md's 169,365 counts the 2020 controller, whose position
    # heads are one entry shorter.
    assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)) == 168_071
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        bound = 0.2 if path[-1].key == "b" else 0.1  # the LSTM bias is PyTorch's two biases summed
        assert float(jnp.abs(leaf).max()) <= bound, path
    assert params["lstm_0"]["w_ih"].shape == (100, 400)
    assert [params[f"pos_{i}"]["bias"].shape[0] for i in range(6)] == [2, 2, 5, 5, 8, 8]
    assert [params[f"conn_{i}"]["bias"].shape[0] for i in range(6)] == [4, 4, 5, 5, 6, 6]
    assert params["op"]["bias"].shape == (11,)


def test_decision_order_and_layout():
    assert controller.NUM_DECISIONS == 19 and gt.ACTION_SIZE == 20
    assert controller.DECISION_CHOICES == (4, 4, 5, 5, 6, 6, 11, 2, 2, 11, 11, 5, 5, 11, 11, 8, 8, 11, 11)
    decisions = jnp.arange(19)[None]
    actions = controller.decisions_to_actions(decisions)
    assert actions.tolist() == [[0, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 0, 1, 2, 3, 4, 5]]
    np.testing.assert_array_equal(controller.actions_to_decisions(actions), decisions)


# ----------------------------------------------------------------------------------------------- sampling
def test_samples_are_always_valid(params):
    """Property: over many keys and a sharply peaked policy too, every sample parses as a valid genotype."""
    peaked = jax.tree_util.tree_map(lambda x: x * 30.0, params)
    seen = np.zeros((controller.NUM_DECISIONS, controller.MAX_CHOICES), bool)
    for p in (params, peaked):
        for seed in range(3):
            actions, log_probs, entropies = controller.sample(p, jax.random.PRNGKey(seed), N)
            assert actions.shape == (N, 20) and actions.dtype == jnp.int32
            assert log_probs.shape == entropies.shape == (N,)
            assert np.all(np.isfinite(log_probs))
            for row in np.asarray(actions):
                g = gt.Genotype.from_actions(row)
                assert gt.parse(g.to_list()) == g
            d = np.asarray(controller.actions_to_decisions(actions))
            seen[np.arange(19)[None], d] = True
    # every choice of every decision turns up (a near-uniform policy, 3,072 samples)
    np.testing.assert_array_equal(seen, np.arange(11)[None] < np.array(controller.DECISION_CHOICES)[:, None])


def test_sample_log_probs_match_evaluation(params):
    actions, log_probs, entropies = controller.sample(params, jax.random.PRNGKey(3), N)
    lp, ent = controller.log_prob_and_entropy(params, actions)
    np.testing.assert_allclose(lp, log_probs, atol=1e-5)
    np.testing.assert_allclose(ent, entropies, atol=1e-5)


def test_sampling_follows_the_policy(params):
    """Empirical frequencies of each decision match its softmax (the draws use the right rows)."""
    sharp = jax.tree_util.tree_map(lambda x: x * 10.0, params)
    probs = np.exp(np.asarray(controller.decision_log_probs(sharp)))
    d = np.concatenate(
        [
            np.asarray(controller.actions_to_decisions(controller.sample(sharp, key, N)[0]))
            for key in jax.random.split(jax.random.PRNGKey(7), 12)
        ]
    )
    for k, choices in enumerate(controller.DECISION_CHOICES):
        freq = np.bincount(d[:, k], minlength=11) / len(d)
        np.testing.assert_allclose(freq[:choices], probs[k, :choices], atol=0.02)


# ------------------------------------------------------------------------------------- log-prob / entropy
def test_entropy_is_sum_of_per_decision_entropies(params):
    log_probs = np.asarray(controller.decision_log_probs(params), np.float64)
    expected = 0.0
    for k, choices in enumerate(controller.DECISION_CHOICES):
        p = np.exp(log_probs[k, :choices])
        assert abs(p.sum() - 1) < 1e-5
        expected -= float(np.sum(p * np.log(p)))
    _, ent = controller.log_prob_and_entropy(params, [gt.ARCH0, gt.ARCH1])
    np.testing.assert_allclose(ent, [expected, expected], rtol=1e-6)
    # near-uniform at init: close to the maximum, the sum of log(choices)
    assert expected < sum(math.log(c) for c in controller.DECISION_CHOICES)


def test_log_prob_is_sum_over_decisions(params):
    table = np.asarray(controller.decision_log_probs(params))
    for g in (gt.ARCH0, gt.ARCH1, gt.ARCH2):
        a = np.asarray(g.to_actions())
        expected = sum(table[k, a[j]] for k, j in enumerate(controller.DECISION_ORDER))
        lp, _ = controller.log_prob_and_entropy(params, [g])
        np.testing.assert_allclose(lp, [expected], atol=1e-5)


def test_accepts_every_genotype_form(params):
    forms = [[gt.ARCH1], [gt.ARCH1.to_list()], ["arch1"], np.asarray([gt.ARCH1.to_actions()]), gt.ARCH1]
    values = [float(controller.log_prob_and_entropy(params, f)[0][0]) for f in forms]
    assert max(values) - min(values) == 0.0


def test_rejects_invalid_genotypes(params):
    bad = np.asarray([gt.ARCH0.to_actions()])
    bad[0, 2] = 2  # pair 1 position 1 has 2 choices
    with pytest.raises(gt.GenotypeError, match="pair 1"):
        controller.log_prob_and_entropy(params, bad)
    with pytest.raises(gt.GenotypeError):
        controller.log_prob_and_entropy(params, np.zeros((2, 19), np.int32))

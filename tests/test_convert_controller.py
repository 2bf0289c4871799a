"""Official controller state dict -> fdn params, checked against an independent numpy LSTM (torch layout)."""

import jax
import numpy as np
import pytest

from fdn import genotype as gt
from fdn.agents import controller
from fdn.convert import controller_params_from_torch

H = 100


def random_state_dict(seed, ctx_sizes=(2, 2, 5, 5, 8, 8), scale=0.3):
    """A state dict in the official 2019 controller's names and PyTorch layouts, from numpy random numbers."""
    rng = np.random.default_rng(seed)

    def u(*shape):
        return rng.uniform(-scale, scale, shape).astype(np.float32)

    sd = {"g_emb": u(1, 1, H), "enc_op.weight": u(11, H), "linear_op.weight": u(11, H), "linear_op.bias": u(11)}
    for layer in range(2):
        sd[f"rnn.weight_ih_l{layer}"] = u(4 * H, H)
        sd[f"rnn.weight_hh_l{layer}"] = u(4 * H, H)
        sd[f"rnn.bias_ih_l{layer}"] = u(4 * H)
        sd[f"rnn.bias_hh_l{layer}"] = u(4 * H)
    for i, n in enumerate((4, 4, 5, 5, 6, 6)):
        sd[f"conn_fcs.{i}.weight"], sd[f"conn_fcs.{i}.bias"] = u(n, H), u(n)
    for i, n in enumerate(ctx_sizes):
        sd[f"ctx_fcs.{i}.weight"], sd[f"ctx_fcs.{i}.bias"] = u(n, H), u(n)
    return sd


def reference_log_prob_and_entropy(sd, genotype):
    """float64 numpy: nn.LSTM semantics step by step (gates i, f, g, o), heads named as the official code."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}

    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    def lstm(x, state):
        out = []
        for layer, (h, c) in enumerate(state):
            z = (
                sd[f"rnn.weight_ih_l{layer}"] @ x
                + sd[f"rnn.bias_ih_l{layer}"]
                + sd[f"rnn.weight_hh_l{layer}"] @ h
                + sd[f"rnn.bias_hh_l{layer}"]
            )
            i, f, g, o = sigmoid(z[:H]), sigmoid(z[H : 2 * H]), np.tanh(z[2 * H : 3 * H]), sigmoid(z[3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
            out.append((h, c))
            x = h
        return x, out

    g = gt.parse(genotype)
    decisions = [(f"conn_fcs.{2 * b + j}", g.blocks[b][j]) for b in range(3) for j in range(2)]
    decisions.append(("linear_op", g.op0))
    for j, (p1, p2, o1, o2) in enumerate(g.pairs):
        decisions += [(f"ctx_fcs.{2 * j}", p1), (f"ctx_fcs.{2 * j + 1}", p2), ("linear_op", o1), ("linear_op", o2)]

    x, state = sd["g_emb"].reshape(H), [(np.zeros(H), np.zeros(H))] * 2
    for _ in range(4):
        x, state = lstm(x, state)
    log_prob = entropy = 0.0
    for head, choice in decisions:
        x, state = lstm(x, state)
        logits = sd[f"{head}.weight"] @ x + sd[f"{head}.bias"]
        logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        log_prob += logp[choice]
        entropy -= np.sum(np.exp(logp) * logp)
    return log_prob, entropy


@pytest.mark.parametrize("seed", [0, 1])
def test_conversion_matches_numpy_reference(seed):
    sd = random_state_dict(seed)
    params = controller_params_from_torch(sd)
    like = controller.init_params(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(like)
    assert jax.tree_util.tree_map(np.shape, params) == jax.tree_util.tree_map(np.shape, like)
    actions = jax.device_get(controller.sample(params, jax.random.PRNGKey(seed), 1024)[0])  # shares a compile
    sampled = [gt.Genotype.from_actions(a) for a in actions[:5]]
    genotypes = [gt.ARCH0, gt.ARCH1, gt.ARCH2] + sampled
    log_probs, entropies = controller.log_prob_and_entropy(params, genotypes)
    for g, lp, ent in zip(genotypes, np.asarray(log_probs), np.asarray(entropies)):
        ref_lp, ref_ent = reference_log_prob_and_entropy(sd, g)
        assert abs(lp - ref_lp) < 2e-5, (g, lp, ref_lp)
        assert abs(ent - ref_ent) < 2e-5, (ent, ref_ent)


def test_prefixes_and_torch_like_tensors_are_accepted():
    class FakeTensor:  # what a torch tensor offers the converter, without importing torch
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    sd = random_state_dict(3)
    wrapped = {f"module.{k}": FakeTensor(v) for k, v in sd.items()}
    a, b = controller_params_from_torch(sd), controller_params_from_torch(wrapped)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["lstm_1"]["b"], sd["rnn.bias_ih_l1"] + sd["rnn.bias_hh_l1"])
    np.testing.assert_array_equal(a["lstm_0"]["w_ih"], sd["rnn.weight_ih_l0"].T)


def test_2020_controller_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="2019"):
        controller_params_from_torch(random_state_dict(0, ctx_sizes=(1, 1, 4, 4, 7, 7)))


def test_missing_and_unknown_keys_raise():
    sd = random_state_dict(0)
    del sd["rnn.bias_hh_l1"]
    with pytest.raises(ValueError, match="rnn.bias_hh_l1"):
        controller_params_from_torch(sd)
    sd = random_state_dict(0)
    sd["extra_head.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="extra_head"):
        controller_params_from_torch(sd)

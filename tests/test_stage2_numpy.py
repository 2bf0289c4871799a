"""Stage 2's update rule against a plain NumPy transcription of the official one (issue 16).

The official stage 2 (official-behaviour.md, "Stage 2"; paper.md 3.4): per step, the encoder gradient and the
decoder gradient are each clipped to global norm 3.0 *on their own*, then the coupled L2 term ``wd * p`` is
added (PyTorch ``weight_decay``, not AdamW), then SGD(momentum 0.9; first buffer = gradient) updates the
encoder and Adam the decoder; parameters PyTorch gives no gradient (``fdn.models.trainable.FROZEN``) do not
move at all. After every step ``avg = 0.99 avg + 0.01 p`` over both; at the epoch end the averages are copied
into the live parameters; BatchNorm statistics are never averaged.

The reference below is written from that description in NumPy float64, without optax. fdn's step is
``fdn.candidate.steps.stage2_step`` with the trainer's own optimisers (``CompiledPrograms.stage2_parts``: the
config wiring and frozen masks the search uses), jitted. The gradients are *given*: the loss is swapped for
``<flat params, G>``, whose gradient is exactly ``G``, so any difference is the update rule's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fdn import genotype as G
from fdn import tasks
from fdn.candidate import CandidateTrainer, build_stage1_cache, steps
from fdn.models import names
from fdn.models.encoder import TAP_GROUPS, MobileNetV2Encoder
from fdn.models.init import draw_variables
from fdn.models.trainable import unused_adapters
from tests.test_candidate import _batches, _tiny_config

# Reads l1 and l2 only: the adapters of l3/l4 and the encoder layers after l2's tap get no gradient.
SHALLOW = G.parse([[0, [0, 0, 9, 4], [0, 1, 0, 9], [1, 4, 9, 0]], [[0, 1], [0, 4], [1, 5]]])
# Large weight decays and rates, so that a decoupled or misplaced L2 term moves the result far beyond float32.
ENC_LR, ENC_WD, DEC_LR, DEC_WD, CLIP = 0.05, 0.1, 0.01, 0.05, 3.0


@pytest.fixture(scope="module")
def parts():
    rng = np.random.default_rng(0)
    encoder = MobileNetV2Encoder()
    abstract = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    enc_vars = jax.device_put(draw_variables(abstract, 1))
    encode = jax.jit(lambda v, x: encoder.apply(v, x, train=False))
    cache = build_stage1_cache(encode, enc_vars, _batches(rng, 4, 32, 3, 4))
    c = _tiny_config()
    s2 = c.stage2
    s2.enc_lr, s2.enc_weight_decay, s2.dec_lr, s2.dec_weight_decay, s2.grad_clip = ENC_LR, ENC_WD, DEC_LR, DEC_WD, CLIP
    trainer = CandidateTrainer(c, 3, enc_vars, cache, None, _batches(rng, 2, 32, 3, 2))
    abstract, tx_enc, tx_dec, f_enc, f_dec = trainer.compiled.stage2_parts(SHALLOW)
    return c.stage2, abstract, tx_enc, tx_dec, f_enc, f_dec


def test_paper_stage2_defaults():
    from fdn.candidate import default_config

    s2 = default_config().stage2
    assert (s2.enc_lr, s2.enc_momentum, s2.dec_lr, s2.grad_clip, s2.polyak_decay) == (1e-3, 0.9, 3e-3, 3.0, 0.99)
    assert (s2.enc_weight_decay, s2.dec_weight_decay) == (1e-5, 1e-5)


def _frozen_by_name(flattener, params_abstract, is_frozen) -> np.ndarray:
    """1.0 where the leaf's path says frozen: written from the official rule, not from fdn.models.trainable."""
    flat = traverse_util.flatten_dict(params_abstract)
    labels = traverse_util.unflatten_dict({k: "frozen" if is_frozen(k) else "on" for k in flat})
    return flattener.mask(labels, "frozen")


def _frozen_masks(params_abstract, f_enc, f_dec):
    last_tap = max(SHALLOW.encoder_levels_used())  # 1 (l2)
    last_layer = names.encoder_layer_number(TAP_GROUPS[last_tap])
    unused = {names.adapter_name(i) for i in range(4) if i > last_tap}
    assert unused == unused_adapters(SHALLOW)
    enc = _frozen_by_name(
        f_enc, params_abstract["encoder"], lambda k: (names.encoder_layer_index(k[0]) or 0) > last_layer
    )
    dec = _frozen_by_name(f_dec, params_abstract["decoder"], lambda k: k[0] in unused)
    assert 0 < enc.sum() < enc.size and 0 < dec.sum() < dec.size
    return enc, dec


# ------------------------------------------------------------------------------------------------ reference
def clip(g, max_norm):
    norm = np.sqrt(np.sum(g * g))
    return g * min(1.0, max_norm / norm)


def reference_step(ref, g_enc, g_dec, frozen_enc, frozen_dec, cfg, t):
    """One official stage-2 step in NumPy float64 (``t`` counts from 1)."""
    g_enc = clip(g_enc, cfg.grad_clip) + cfg.enc_weight_decay * ref["enc"]
    g_dec = clip(g_dec, cfg.grad_clip) + cfg.dec_weight_decay * ref["dec"]
    g_enc, g_dec = g_enc * (1 - frozen_enc), g_dec * (1 - frozen_dec)  # PyTorch skips them entirely
    ref["trace"] = g_enc if t == 1 else cfg.enc_momentum * ref["trace"] + g_enc
    ref["enc"] = ref["enc"] - cfg.enc_lr * ref["trace"]
    b1, b2, eps = 0.9, 0.999, 1e-8
    ref["mu"] = b1 * ref["mu"] + (1 - b1) * g_dec
    ref["nu"] = b2 * ref["nu"] + (1 - b2) * g_dec**2
    m_hat, v_hat = ref["mu"] / (1 - b1**t), ref["nu"] / (1 - b2**t)
    ref["dec"] = ref["dec"] - cfg.dec_lr * m_hat / (np.sqrt(v_hat) + eps)
    d = cfg.polyak_decay
    ref["avg_enc"] = d * ref["avg_enc"] + (1 - d) * ref["enc"]
    ref["avg_dec"] = d * ref["avg_dec"] + (1 - d) * ref["dec"]


def _gradient(rng, size, norm, frozen):
    g = rng.normal(size=size) * (1 - frozen)  # frozen entries get no gradient, as in the real network
    return (g * norm / np.linalg.norm(g)).astype(np.float32)


# (encoder gradient norm, decoder gradient norm) per step: clip on the encoder only, on neither, on the decoder
# only. A joint clip of both would scale the small side too.
NORMS = [(30.0, 0.5), (1.0, 0.2), (0.3, 40.0)]


@pytest.fixture(scope="module")
def run(parts):
    """Three steps of fdn's step and of the reference: [(fdn state, reference, new BN stats)], masks, start."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _run_fdn_and_reference(monkeypatch, parts)


def _run_fdn_and_reference(monkeypatch, parts):
    cfg, abstract, tx_enc, tx_dec, f_enc, f_dec = parts

    def given_gradient_loss(predict, params, batch_stats, images, labels, plan, cfg, task):
        assert task == tasks.SEGMENTATION
        loss = jnp.vdot(f_enc.flatten(params["encoder"]), images["enc"]) + jnp.vdot(
            f_dec.flatten(params["decoder"]), images["dec"]
        )
        return loss, ({}, labels)  # ``labels`` carries the step's new BN statistics

    monkeypatch.setattr(steps, "stage2_loss", given_gradient_loss)
    step = jax.jit(
        lambda s, grads, stats: steps.stage2_step(None, tx_enc, tx_dec, f_enc, f_dec, cfg, s, grads, stats, None)
    )
    rng = np.random.default_rng(3)
    frozen_enc, frozen_dec = _frozen_masks(abstract["params"], f_enc, f_dec)
    enc0 = (0.1 * rng.normal(size=f_enc.size)).astype(np.float32)
    dec0 = (0.1 * rng.normal(size=f_dec.size)).astype(np.float32)
    stats0 = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), abstract["batch_stats"])
    state = steps.init_stage2_state(tx_enc, tx_dec, jnp.asarray(enc0), jnp.asarray(dec0), stats0)
    ref = {
        "enc": enc0.astype(np.float64),
        "dec": dec0.astype(np.float64),
        "trace": np.zeros(f_enc.size),
        "mu": np.zeros(f_dec.size),
        "nu": np.zeros(f_dec.size),
        "avg_enc": enc0.astype(np.float64),
        "avg_dec": dec0.astype(np.float64),
    }
    history = []
    for t, (n_enc, n_dec) in enumerate(NORMS, start=1):
        g_enc, g_dec = _gradient(rng, f_enc.size, n_enc, frozen_enc), _gradient(rng, f_dec.size, n_dec, frozen_dec)
        new_stats = jax.tree.map(lambda x, t=t: x + float(t), stats0)
        state, _ = step(state, {"enc": jnp.asarray(g_enc), "dec": jnp.asarray(g_dec)}, new_stats)
        reference_step(ref, g_enc.astype(np.float64), g_dec.astype(np.float64), frozen_enc, frozen_dec, cfg, t)
        history.append((jax.device_get(state), {k: v.copy() for k, v in ref.items()}, new_stats))
    return history, (frozen_enc, frozen_dec), (enc0, dec0)


def _moment(opt_state, name):
    from optax import tree_utils

    return np.asarray(tree_utils.tree_get(opt_state, name))


# Bounds on |fdn (float32) - NumPy (float64)|, each beside the worst measured over the 3 steps (2-core CPU).
# Adam amplifies float32 rounding of its input where m / sqrt(v) nearly cancels, hence the decoder's larger
# bound; it is still ~1e-3 of one step (lr 1e-2). The mistakes this guards move things by >=1e-4 (a joint clip
# rescales the small side's gradient, a decoupled L2 adds wd * p = 5e-3 to a step).
ATOL = {
    "enc": 2e-7,  # 3.9e-8
    "dec": 1e-5,  # 3.1e-6
    "trace": 1e-7,  # 1.2e-8 (SGD buffer, values ~1e-2)
    "mu": 1e-7,  # 1.5e-8 (values ~5e-3)
    "nu": 1e-10,  # 4.7e-12 (values ~3e-8)
    "avg_enc": 4e-7,  # 8.9e-8
    "avg_dec": 4e-7,
}  # 8.9e-8


def _close(got, want, what, key):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=ATOL[key], err_msg=what)


def test_stage2_steps_match_numpy(run):
    history, _, _ = run
    for t, (state, ref, stats) in enumerate(history, start=1):
        for key in ("enc", "dec", "avg_enc", "avg_dec"):
            _close(state[key], ref[key], f"{key}, step {t}", key)
        _close(_moment(state["opt_enc"], "trace"), ref["trace"], f"SGD momentum buffer, step {t}", "trace")
        for key in ("mu", "nu"):
            _close(_moment(state["opt_dec"], key), ref[key], f"Adam {key}, step {t}", key)
        # BN statistics are the step's new ones, as the forward pass returned them.
        for a, b in zip(jax.tree.leaves(state["batch_stats"]), jax.tree.leaves(stats)):
            np.testing.assert_array_equal(a, b)


def test_stage2_epoch_end_writes_back_averages_not_bn_stats(run):
    history, _, _ = run
    state, ref, stats = history[-1]
    ended = jax.device_get(steps.end_epoch(jax.device_put(state)))
    _close(ended["enc"], ref["avg_enc"], "encoder after write-back", "avg_enc")
    _close(ended["dec"], ref["avg_dec"], "decoder after write-back", "avg_dec")
    assert not np.allclose(ended["dec"], state["dec"])  # the write-back did something
    for a, b in zip(jax.tree.leaves(ended["batch_stats"]), jax.tree.leaves(stats)):
        np.testing.assert_array_equal(a, b)


def test_stage2_frozen_parameters_never_move(run):
    history, (frozen_enc, frozen_dec), (enc0, dec0) = run
    fe, fd = frozen_enc.astype(bool), frozen_dec.astype(bool)
    for state, _, _ in history:
        # Bit-exact: no decay, no momentum, no update (a zero gradient would still decay them in JAX).
        np.testing.assert_array_equal(state["enc"][fe], enc0[fe])
        np.testing.assert_array_equal(state["dec"][fd], dec0[fd])
        # Their average stays at them too, up to the rounding of 0.99 * p + 0.01 * p in float32.
        np.testing.assert_allclose(state["avg_enc"][fe], enc0[fe], rtol=1e-6, atol=1e-9)
        assert not _moment(state["opt_enc"], "trace")[fe].any()
        assert not _moment(state["opt_dec"], "mu")[fd].any() and not _moment(state["opt_dec"], "nu")[fd].any()
        assert not np.array_equal(state["enc"][~fe], enc0[~fe])

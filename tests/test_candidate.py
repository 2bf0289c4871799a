"""Candidate training: one official stage-1 step (parity), a tiny stage1 -> stage2 -> reward run, failures."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn import genotype as G
from fdn.candidate import (CandidateFailure, CandidateTrainer, Stage1Cache, build_stage1_cache,
                           default_config, flat, optim, steps)
from fdn.candidate.programs import make_programs
from fdn.models.decoder import DecoderSettings
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.init import draw_variables

PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
# Cheap ops only (conv1x1, skip, GAP) so the tiny run compiles quickly; uses l1, l4 and a block output.
TINY = G.parse([[0, [0, 0, 9, 4], [0, 1, 0, 9], [1, 4, 9, 0]], [[3, 3], [0, 4], [1, 5]]])


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


# ------------------------------------------------------------------------------------------------ parity
@pytest.fixture(scope="module", params=["per_genotype", "universal"])
def official_step(request):
    """One official stage-1 step through each decoder program (``fdn.candidate.programs``)."""
    if not (PARITY / "search_a_stage1.npz").is_file():
        pytest.skip("parity fixture search_a_stage1 not available (../shared absent)")
    from fdn.convert.segmenter import torch_from_variables, variables_from_torch
    from fdn.models.segmenter import ModelSpec

    with np.load(PARITY / "search_a_stage1.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads((PARITY / "search_a_stage1.json").read_text())
    genotype = G.parse(meta["genotype"])
    kw = meta["decoder_kwargs"]
    settings = DecoderSettings(kw["num_classes"], kw["agg_size"], kw["repeats"], kw["aux_cell"])
    spec = ModelSpec(genotype, settings)
    # The converter reads full segmenter state dicts; search_a holds the same model's encoder.
    with np.load(PARITY / "search_a.npz") as z:
        state_dict = {k: z[k] for k in z.files if k.startswith("encoder.")}
    state_dict.update({"decoder." + k[len("init/"):]: v for k, v in arrays.items() if k.startswith("init/")})
    variables = variables_from_torch(state_dict, spec)
    dec_vars = {"params": variables["params"]["decoder"], "batch_stats": variables["batch_stats"]["decoder"]}
    programs = make_programs(request.param, settings)
    prog_vars = programs.to_program(dec_vars, genotype)
    cfg = default_config().stage1
    flattener = flat.Flattener(prog_vars["params"])
    trainable = 1.0 - flattener.mask(optim.decoder_labels(prog_vars["params"], genotype), optim.FROZEN)
    tx = optim.flat_adam(cfg.lr, cfg.weight_decay, cfg.grad_clip, trainable)
    state = steps.init_state(tx, flattener.flatten(prog_vars["params"]), prog_vars["batch_stats"])
    predict, data = programs.stage1_predict(genotype), programs.data(genotype)
    feats = [jnp.asarray(arrays[f"enc_out{i}"].transpose(0, 2, 3, 1)) for i in range(4)]
    labels = jnp.asarray(arrays["y"].astype(np.int32))
    teacher = jnp.asarray(arrays["kd_y"].transpose(0, 2, 3, 1))
    with jax.default_matmul_precision("highest"):
        step = jax.jit(lambda s, f, y, t, d: steps.stage1_step(predict, tx, flattener, cfg, s, f, y, t, d))
        new_state, metrics = step(state, feats, labels, teacher, data)

    def official_names(params, batch_stats=None):
        ordinary = programs.to_ordinary({"params": params, "batch_stats": batch_stats or prog_vars["batch_stats"]},
                                        genotype)
        v = {"params": {"decoder": ordinary["params"]}}
        if batch_stats is not None:
            v["batch_stats"] = {"decoder": ordinary["batch_stats"]}
        sd = torch_from_variables(v)
        return {k[len("decoder."):]: x for k, x in sd.items() if not k.endswith("tracked")}

    return {"programs": request.param, "arrays": arrays, "meta": meta, "metrics": jax.device_get(metrics),
            "tx": tx, "state": state,
            "flattener": flattener, "init": official_names(dec_vars["params"]),
            "after": official_names(flattener.unflatten(new_state["params"]), new_state["batch_stats"]),
            "avg": official_names(flattener.unflatten(new_state["avg"])), "names": official_names}


def test_stage1_loss_parts_match_official(official_step):
    m, s = official_step["metrics"], official_step["meta"]["scalars"]
    assert rel_l2(m["loss"], s["loss_official"]) < 1e-5
    assert rel_l2(m["nll"], s["loss_main_nll"]) < 1e-5
    assert rel_l2(m["kd"], s["loss_kd_mse"]) < 1e-5
    assert rel_l2(m["aux"], s["loss_aux_nll"]) < 1e-5
    assert rel_l2(m["grad_norm"], s["grad_norm_official"]) < 1e-4


def test_stage1_params_after_one_adam_step(official_step):
    a, after, init = official_step["arrays"], official_step["after"], official_step["init"]
    # Parameters the official code gives no gradient (the unused adapter) are not touched at all.
    for name in official_step["meta"]["params_without_grad"]:
        np.testing.assert_array_equal(after[name], init[name])
    # Adam's first step is ~lr * sign(grad): entries whose gradient is float noise (GAP branches followed by
    # batch-stat BN) may flip, so compare the whole update vector, and BN running statistics tightly.
    keys = sorted(k for k in after if f"after_step/{k}" in a and "running" not in k)
    got = np.concatenate([(after[k] - init[k]).ravel() for k in keys])
    want = np.concatenate([(a[f"after_step/{k}"] - init[k]).ravel() for k in keys])
    assert rel_l2(got, want) < 0.05
    assert max(rel_l2(after[k], a[f"after_step/{k}"]) for k in keys) < 0.02
    for k in (k for k in after if "running" in k):
        assert rel_l2(after[k], a[f"after_step/{k}"]) < 1e-4, k


@pytest.mark.parametrize("official_step", ["per_genotype"], indirect=True)  # the optimiser alone, ordinary layout
def test_stage1_optimizer_on_official_gradient(official_step):
    """Clip 3.0 -> coupled L2 1e-5 -> Adam 3e-3, fed the official raw gradient, gives the official step."""
    a, f, init = official_step["arrays"], official_step["flattener"], official_step["init"]
    names = official_step["names"]
    zero = jax.tree.map(np.zeros_like, f.unflatten(official_step["state"]["params"]))
    template = names(zero)
    grads = {k: a.get(f"grad/{k}", np.zeros_like(v)) for k, v in template.items()}
    # Back to fdn's layout through the same mapping, in flat order.
    from fdn.convert import torch_layout as L
    from flax import traverse_util

    flat_tree = traverse_util.flatten_dict(zero)
    g_tree = traverse_util.unflatten_dict({p: L.from_torch_array(p[-1], grads[L.torch_key(("decoder",) + p)
                                                                              [len("decoder."):]])
                                           for p in flat_tree})
    state = official_step["state"]
    updates, _ = official_step["tx"].update(f.flatten(g_tree), state["opt_state"], state["params"])
    after = names(f.unflatten(state["params"] + updates))
    for k, v in after.items():
        if f"after_step/{k}" in a and "running" not in k:
            np.testing.assert_allclose(v, a[f"after_step/{k}"], atol=2e-6, err_msg=k)


def test_stage1_polyak_average(official_step):
    a, after, init, avg = (official_step[k] for k in ("arrays", "after", "init", "avg"))
    for k in avg:
        np.testing.assert_allclose(avg[k], 0.9 * init[k] + 0.1 * after[k], rtol=1e-6, atol=1e-7, err_msg=k)
        if f"polyak/{k}" in a:
            assert rel_l2(avg[k], a[f"polyak/{k}"]) < 2e-3, k


# ------------------------------------------------------------------------------------------------ tiny run
def _tiny_config():
    c = default_config()
    c.decoder.agg_size = 8
    c.stage1.epochs, c.stage1.batch_size = 2, 4
    c.stage2.epochs, c.stage2.batch_size, c.stage2.crop_size, c.stage2.steps_per_epoch = 1, 2, 32, 3
    c.stage2.check_every = 2
    return c


def _batches(rng, n, size, num_classes, batch):
    out = []
    for i in range(0, n, batch):
        labels = rng.integers(0, num_classes, (batch, size, size)).astype(np.uint8)
        labels[:, :2] = 255
        images = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
        valid = np.array([True] * (batch - 1) + [i > 0])  # one padding slot in the first batch
        out.append({"image": images, "segmentation": labels, "valid": valid})
    return out


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    encoder = MobileNetV2Encoder()
    abstract = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    enc_vars = jax.device_put(draw_variables(abstract, 1))
    encode = jax.jit(lambda v, x: encoder.apply(v, x, train=False))
    teacher = lambda x: jnp.tile(x[:, ::2, ::2, :1], (1, 1, 1, 3))  # noqa: E731  (a fixed "teacher")
    cache = build_stage1_cache(encode, enc_vars, _batches(rng, 8, 32, 3, 4), teacher_fn=teacher)
    train = _batches(rng, 6, 32, 3, 2)
    val = _batches(rng, 4, 32, 3, 2)
    trainer = CandidateTrainer(_tiny_config(), 3, enc_vars, cache, lambda: iter(train), val)
    return trainer, cache


def test_cache_shapes(tiny):
    _, cache = tiny
    assert [f.shape for f in cache.features] == [(8, 8, 8, 24), (8, 4, 4, 32), (8, 2, 2, 96), (8, 1, 1, 320)]
    assert cache.labels.shape == (8, 8, 8) and cache.labels.dtype == jnp.uint8
    assert cache.teacher.shape == (8, 8, 8, 3)


def test_stage1_stage2_reward(tiny):
    trainer, _ = tiny
    r1 = trainer.stage1(TINY, jax.random.PRNGKey(0))
    assert 0.0 <= r1.reward <= 1.0 and set(r1.metrics) == {"miou", "macc", "fwiou", "reward"}
    assert r1.params_total > r1.params_without_aux > 0
    assert set(r1.seconds) >= {"compile", "train", "eval", "total"} and r1.seconds["compile"] > 0
    again = trainer.stage1(TINY, jax.random.PRNGKey(0))  # compiled programs are reused
    assert again.seconds["compile"] < 0.05 * r1.seconds["compile"]
    assert again.reward == r1.reward
    r2 = trainer.stage2(TINY, r1, jax.random.PRNGKey(1))
    assert 0.0 <= r2.reward <= 1.0
    again2 = trainer.stage2(TINY, r1)  # r1 and the trainer still usable: the step did not donate them
    assert again2.seconds["compile"] < 0.05 * r2.seconds["compile"]
    enc0 = jax.tree.leaves(r1.variables["params"]["encoder"])
    enc1 = jax.tree.leaves(r2.variables["params"]["encoder"])
    assert any(not np.array_equal(a, b) for a, b in zip(enc0, enc1))


def test_nan_loss_is_a_candidate_failure(tiny):
    trainer, cache = tiny
    bad = Stage1Cache(tuple(jnp.full_like(f, jnp.nan) for f in cache.features), cache.labels, cache.teacher)
    trainer.cache, saved = bad, trainer.cache
    try:
        with pytest.raises(CandidateFailure, match="non-finite loss"):
            trainer.stage1(TINY, jax.random.PRNGKey(0))
    finally:
        trainer.cache = saved


def test_torchvision_layout_encoder_reaches_every_program():
    """``expand_first_block=False`` (torchvision's layout, issue 16): the trainer runs that encoder in its
    meta-val features and its stage-2 program, so variables in that layout train through both stages."""
    rng = np.random.default_rng(1)
    encoder = MobileNetV2Encoder(expand_first_block=False)
    abstract = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    assert "expand" not in abstract["params"]["layer2_0"]
    enc_vars = jax.device_put(draw_variables(abstract, 2))
    encode = jax.jit(lambda v, x: encoder.apply(v, x, train=False))
    cache = build_stage1_cache(encode, enc_vars, _batches(rng, 8, 32, 3, 4))
    train, val = _batches(rng, 6, 32, 3, 2), _batches(rng, 4, 32, 3, 2)
    trainer = CandidateTrainer(_tiny_config(), 3, enc_vars, cache, lambda: iter(train), val,
                               expand_first_block=False)
    r1 = trainer.stage1(TINY, jax.random.PRNGKey(0))
    r2 = trainer.stage2(TINY, r1, jax.random.PRNGKey(1))
    assert 0.0 <= r1.reward <= 1.0 and 0.0 <= r2.reward <= 1.0
    assert (r1.steps, r2.steps) == (2 * (8 // 4), 3)  # the trainer reports the steps it ran
    assert "expand" not in r2.variables["params"]["encoder"]["layer2_0"]

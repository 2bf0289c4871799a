"""The final-training step on a small stand-in model (compiles in seconds): the NaN guard, the frozen
parameters, the LR schedule, and data parallelism over fake CPU devices equal to one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import demo_train, train_common
from fdn import genotype as G
from fdn import sharding
from fdn.models.layers import Conv, ConvBN
from fdn.train import step as train_step

ROOT = Path(__file__).resolve().parents[1]


class TinySegmenter(nn.Module):
    """The Segmenter's interface and parameter naming, a few layers deep (BN included: sync-BN matters)."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, images, train=False, with_aux=True):
        x = ConvBN(4, 3, stride=2, padding=1, name="layer1")(images, train)  # encoder
        y = ConvBN(4, 3, stride=2, padding=1, name="layer8_0")(x, train)
        a = ConvBN(4, 1, name="adapt1")(x, train)  # decoder
        ConvBN(4, 1, name="adapt2")(y, train)  # an unused encoder output: no gradient
        logits = Conv(self.num_classes, 1, use_bias=True, name="merge")(a)
        aux = [Conv(self.num_classes, 1, use_bias=True, name="aux_clfs_0")(a)] if with_aux else []
        return logits, aux


def tiny_variables(seed=0):
    model = TinySegmenter()
    v = model.init(jax.random.key(seed), jnp.zeros((2, 16, 16, 3)), train=False)
    # the trainer expects {'encoder': ..., 'decoder': ...} at the top, as the Segmenter has
    split = {
        c: {
            "encoder": {k: v[c][k] for k in ("layer1", "layer8_0")},
            "decoder": {k: v[c][k] for k in v[c] if k not in ("layer1", "layer8_0")},
        }
        for c in v
    }
    return model, split


def flat_apply_model():
    inner = TinySegmenter()

    class M:
        def apply(self, variables, images, train=False, with_aux=True, mutable=False):
            flat = {c: {**variables[c]["encoder"], **variables[c]["decoder"]} for c in variables}
            out = inner.apply(flat, images, train=train, with_aux=with_aux, mutable=mutable)
            if not mutable:
                return out
            (logits, aux), new = out
            enc = {k: new["batch_stats"][k] for k in ("layer1", "layer8_0") if k in new["batch_stats"]}
            dec = {k: v for k, v in new["batch_stats"].items() if k not in enc}
            return (logits, aux), {"batch_stats": {"encoder": enc, "decoder": dec}}

    return M()


def config():
    c = demo_train.get_config("tiny")
    c.model.num_classes = 3
    return c


def batch(seed, n=4, size=16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (n, size, size)).astype(np.uint8)
    labels[:, :2] = 255
    return {"image": rng.normal(size=(n, size, size, 3)).astype(np.float32), "segmentation": labels}


def setup(c=None):
    c = c or config()
    _, variables = tiny_variables()
    genotype = G.parse("[[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 4], [4, 5]]]")
    tx, _ = train_step.make_optimizer(c.optim, variables["params"], genotype, 10, c.data.batch_size)
    state = train_step.init_state(tx, variables)
    step = jax.jit(train_step.make_train_step(flat_apply_model(), tx, c))
    return state, step, genotype


def test_nonfinite_loss_freezes_the_state_and_names_the_step():
    state, step, _ = setup()
    state, m = step(state, batch(0), None)
    assert np.isfinite(float(m["loss"])) and int(state["bad_step"]) == 0
    good = jax.tree.map(np.asarray, state)
    poisoned = batch(1)
    poisoned["image"][0, 3, 3, 0] = np.nan
    state, m = step(state, poisoned, None)
    assert not np.isfinite(float(m["loss"]))
    assert int(state["bad_step"]) == 2 and int(state["step"]) == 2
    state, m = step(state, batch(2), None)  # later steps are no-ops: the first bad step stays recorded
    assert int(state["bad_step"]) == 2
    for key in ("params", "batch_stats", "opt_state", "polyak"):
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state[key]), good[key])


def test_unused_parameters_stay_put_and_polyak_moves():
    state, step, genotype = setup()
    labels = train_step.param_labels(state["params"], genotype)
    # the genotype reads only l1 (adapt1): adapt2 and the encoder layers after layer3 get no gradient
    assert labels["decoder"]["adapt2"]["conv"]["kernel"] == train_step.FROZEN
    assert labels["encoder"]["layer8_0"]["conv"]["kernel"] == train_step.FROZEN
    assert labels["encoder"]["layer1"]["conv"]["kernel"] == "encoder"
    assert labels["decoder"]["merge"]["kernel"] == "decoder"
    before = jax.tree.map(np.asarray, state)
    for i in range(3):
        state, _ = step(state, batch(i), None)
    after = jax.tree.map(np.asarray, state)
    np.testing.assert_array_equal(
        after["params"]["decoder"]["adapt2"]["conv"]["kernel"], before["params"]["decoder"]["adapt2"]["conv"]["kernel"]
    )
    assert not np.allclose(
        after["params"]["decoder"]["merge"]["kernel"], before["params"]["decoder"]["merge"]["kernel"]
    )
    # Polyak: avg = 0.99 avg + 0.01 params, strictly between the start and the live weights
    p0, p, a = (x["params"]["decoder"]["merge"]["kernel"] for x in (before, after, {"params": after["polyak"]}))
    assert 0 < np.abs(a - p0).max() < np.abs(p - p0).max()


def test_lr_schedule_is_rf_lw_scaled_by_batch():
    c = config()
    rf_lw = train_common.train_config().optim  # the demo config uses its own rates for a random encoder
    c.optim.enc_lrs, c.optim.dec_lrs = rf_lw.enc_lrs, rf_lw.dec_lrs
    c.optim.stage_epochs = (2, 1, 1)
    c.optim.reference_batch = 6
    enc, dec = train_step.lr_schedules(c.optim, steps_per_epoch=10, batch_size=12)
    assert [float(enc(s)) for s in (0, 19, 20, 29, 30, 39)] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2e-4, 2e-4])
    assert [float(dec(s)) for s in (0, 20, 30)] == pytest.approx([1e-2, 5e-3, 2e-3])


SHARDED_SCRIPT = r"""
import json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[1])
from tests import test_train_step as t
from fdn import sharding
assert jax.device_count() == 4, jax.devices()
out = {}
for n in (1, 4):
    mesh = sharding.make_mesh(jax.devices()[:n])
    state, step, _ = t.setup()
    state = sharding.replicate(state, mesh)
    repl = sharding.replicated(mesh)
    step = jax.jit(step, out_shardings=(repl, repl))
    losses = []
    for i in range(3):
        b = sharding.shard_batch(t.batch(i, n=8), mesh)
        assert len(b["image"].sharding.device_set) == n
        state, m = step(state, b, None)
        losses.append(float(m["loss"]))
    out[n] = {"losses": losses, "kernel": np.asarray(state["params"]["decoder"]["merge"]["kernel"]).tolist(),
              "bn_mean": np.asarray(state["batch_stats"]["encoder"]["layer1"]["bn"]["mean"]).tolist()}
print("RESULT" + json.dumps(out))
"""


def test_sharded_step_equals_one_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT)
    )
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    one, four = result["1"], result["4"]
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(four["kernel"], one["kernel"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(four["bn_mean"], one["bn_mean"], rtol=1e-4, atol=1e-6)  # sync-BN


def test_batch_not_divisible_by_devices_is_a_user_error():
    from fdn.errors import InputError

    with pytest.raises(InputError, match="not divisible"):
        sharding.check_batch(3, type("FakeMesh", (), {"size": 2})(), "data.batch_size")

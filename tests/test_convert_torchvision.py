"""torchvision's MobileNet-v2 state dict -> fdn encoder: key mapping, shapes, errors, and numbers.

Numbers come from ``../shared/parity/torchvision_mobilenet_v2_seed1.npz`` (torchvision's own forward, random
weights and BN statistics; skipped when ``../shared`` is absent). The key mapping is also checked against a
state dict written here, from torchvision's architecture table, with numpy random numbers.
"""

from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from fdn.convert.segmenter import ConversionError
from fdn.convert.torchvision import encoder_variables_from_torchvision, with_encoder
from fdn.models.encoder import MobileNetV2Encoder

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "parity" / "torchvision_mobilenet_v2_seed1.npz"
# torchvision's inverted_residual_setting: (t, c, n, s).
SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def torchvision_state_dict(seed=0):
    """A state dict under torchvision's names and shapes (``torchvision.models.mobilenet_v2()``), written from
    its architecture table, not from fdn's mapping."""
    rng = np.random.default_rng(seed)
    sd = {}

    def conv(name, o, i, k):
        sd[f"{name}.weight"] = rng.normal(0, 1 / np.sqrt(i * k * k), (o, i, k, k)).astype(np.float32)

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.2, c).astype(np.float32)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2, c).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.array(0, np.int64)

    conv("features.0.0", 32, 3, 3)
    bn("features.0.1", 32)
    cin, idx = 32, 1
    for t, c, n, _ in SETTING:
        for _ in range(n):
            hidden, p = cin * t, f"features.{idx}.conv"
            if t == 1:
                conv(f"{p}.0.0", hidden, 1, 3), bn(f"{p}.0.1", hidden)
                conv(f"{p}.1", c, hidden, 1), bn(f"{p}.2", c)
            else:
                conv(f"{p}.0.0", hidden, cin, 1), bn(f"{p}.0.1", hidden)
                conv(f"{p}.1.0", hidden, 1, 3), bn(f"{p}.1.1", hidden)
                conv(f"{p}.2", c, hidden, 1), bn(f"{p}.3", c)
            cin, idx = c, idx + 1
    conv("features.18.0", 1280, 320, 1)
    bn("features.18.1", 1280)
    sd["classifier.1.weight"] = rng.normal(0, 0.03, (1000, 1280)).astype(np.float32)
    sd["classifier.1.bias"] = np.zeros(1000, np.float32)
    return sd


def flat(variables):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(dict(variables)).items()}


@pytest.fixture(scope="module")
def written():
    return torchvision_state_dict()


def test_written_state_dict_has_torchvisions_keys_and_shapes(written):
    if not FIXTURE.is_file():
        pytest.skip("../shared absent")
    with np.load(FIXTURE) as z:
        real = {k: z[k].shape for k in z.files if k.startswith(("features.", "classifier."))}
    assert len(real) == 314
    assert {k: v.shape for k, v in written.items()} == real


@pytest.mark.parametrize("expand_first_block", [False, True])
def test_key_mapping_and_layouts(written, expand_first_block):
    imported = encoder_variables_from_torchvision(written, expand_first_block)
    got = flat(imported.variables)
    assert got["params/layer1/conv/kernel"].shape == (3, 3, 3, 32)
    np.testing.assert_array_equal(
        got["params/layer1/conv/kernel"], written["features.0.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(got["batch_stats/layer1/bn/var"], written["features.0.1.running_var"])
    # First block: no expansion in torchvision, so its depthwise conv is conv.0.0 and its projection conv.1.
    np.testing.assert_array_equal(
        got["params/layer2_0/dw_conv/kernel"], written["features.1.conv.0.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(got["params/layer2_0/project_bn/scale"], written["features.1.conv.2.weight"])
    # Other blocks: conv.0 expansion, conv.1 depthwise, conv.2 projection, conv.3 its BN;
    # features.17 = layer8_0.
    np.testing.assert_array_equal(
        got["params/layer3_1/expand/conv/kernel"], written["features.3.conv.0.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(got["batch_stats/layer5_3/dw_bn/mean"], written["features.10.conv.1.1.running_mean"])
    np.testing.assert_array_equal(
        got["params/layer8_0/project_conv/kernel"], written["features.17.conv.2.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(got["params/layer8_0/project_bn/bias"], written["features.17.conv.3.bias"])
    assert imported.unused_keys == sorted(k for k in written if k.startswith(("features.18.", "classifier.")))
    # Every value comes from the file except the official-only expansion of the first block.
    sources = {v.tobytes() for k, v in written.items() if v.ndim == 1}
    own = sorted(k for k, v in got.items() if v.ndim == 1 and v.tobytes() not in sources)
    assert own == (
        [
            "batch_stats/layer2_0/expand/bn/mean",
            "batch_stats/layer2_0/expand/bn/var",
            "params/layer2_0/expand/bn/bias",
            "params/layer2_0/expand/bn/scale",
        ]
        if expand_first_block
        else []
    )
    assert bool(imported.not_from_file) == expand_first_block


def test_identity_and_random_expansion(written):
    ident = flat(encoder_variables_from_torchvision(written, True).variables)
    np.testing.assert_array_equal(ident["params/layer2_0/expand/conv/kernel"][0, 0], np.eye(32, dtype=np.float32))
    np.testing.assert_allclose(ident["batch_stats/layer2_0/expand/bn/var"] + 1e-5, 1.0, rtol=1e-7)
    rand = flat(encoder_variables_from_torchvision(written, True, expand_init="random", seed=3).variables)
    assert not np.allclose(rand["params/layer2_0/expand/conv/kernel"][0, 0], np.eye(32))
    assert np.abs(rand["params/layer2_0/expand/conv/kernel"]).max() <= 1 / np.sqrt(32)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda sd: sd.pop("features.7.conv.1.1.running_var"), "missing key features.7.conv.1.1.running_var"),
        (lambda sd: sd.update({"features.19.weight": np.zeros(3)}), "unexpected key features.19.weight"),
        (
            lambda sd: sd.update({"features.4.conv.2.weight": np.zeros((32, 144, 3, 3), np.float32)}),
            "wrong shape for features.4.conv.2.weight: got (32, 144, 3, 3), expected (32, 144, 1, 1)",
        ),
    ],
)
def test_problems_name_the_key(written, change, message):
    sd = dict(written)
    change(sd)
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encoder_variables_from_torchvision(sd)


def test_unused_head_keys_are_optional(written):
    sd = {k: v for k, v in written.items() if not k.startswith(("features.18.", "classifier."))}
    assert encoder_variables_from_torchvision(sd).unused_keys == []


def test_with_encoder_and_checkpoint(written, tmp_path):
    from fdn.convert.encoder_cli import torchvision_to_fdn
    from fdn.serve import checkpoint

    np.savez(tmp_path / "mbv2.npz", **written)
    message = torchvision_to_fdn(tmp_path / "mbv2.npz", tmp_path / "ckpt", "arch1", agg_size=16, repeats=1)
    assert "ImageNet-head keys unused" in message
    spec, variables, info = checkpoint.load_model(tmp_path / "ckpt")
    assert spec.expand_first_block and info["metadata"]["first_block_expand_init"] == "identity"
    enc = flat(encoder_variables_from_torchvision(written, True).variables)
    got = flat({c: v["encoder"] for c, v in variables.items()})
    assert enc.keys() == got.keys()
    for k in enc:
        np.testing.assert_array_equal(got[k], enc[k], err_msg=k)
    with pytest.raises(ConversionError, match="encoder layouts differ"):
        with_encoder(variables, encoder_variables_from_torchvision(written, False).variables)


@pytest.fixture(scope="module")
def fixture_arrays():
    if not FIXTURE.is_file():
        pytest.skip("torchvision parity fixture not available (../shared absent)")
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def rel_l2(got_nhwc, want_nchw):
    got = np.asarray(got_nhwc, np.float64).transpose(0, 3, 1, 2)
    return float(np.linalg.norm(got - want_nchw) / np.linalg.norm(want_nchw))


@pytest.mark.parametrize("expand_first_block", [False, True])
def test_taps_match_torchvision(fixture_arrays, expand_first_block):
    """torchvision layout: eval and train taps as torchvision's; official layout with the identity expansion:
    eval taps as torchvision's (train mode is approximate by design, so not compared)."""
    a = fixture_arrays
    sd = {k: v for k, v in a.items() if k.startswith(("features.", "classifier."))}
    variables = encoder_variables_from_torchvision(sd, expand_first_block).variables
    model = MobileNetV2Encoder(expand_first_block)
    x = a["input"].transpose(0, 2, 3, 1)
    with jax.default_matmul_precision("highest"):
        taps = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
        errors = {f"eval/tap{i}": rel_l2(t, a[f"eval/tap{i}"]) for i, t in enumerate(taps)}
        assert max(errors.values()) < 1e-4, errors
        if not expand_first_block:
            train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
            taps, _ = train(variables, x)
            errors = {f"train/tap{i}": rel_l2(t, a[f"train/tap{i}"]) for i, t in enumerate(taps)}
            assert max(errors.values()) < 1e-3, errors

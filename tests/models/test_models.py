"""Model structure: shapes, parameter counts, modes, the ops, resampling and the official key layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn import genotype as G
from fdn.convert import torch_layout
from fdn.models.decoder import DecoderSettings
from fdn.models.ops import make_op
from fdn.models.resize import resize_bilinear, resize_nearest
from fdn.models.segmenter import ModelSpec, abstract_variables, param_counts
from fdn.serve.export import random_variables

RELEASED_COUNTS = {  # paper.md 5.2 (without aux; 21 classes / depth) and the search-time totals
    "arch0": (2_629_909, 2_618_369, 2_412_884, 2_212_517),
    "arch1": (2_810_133, 2_798_593, 2_569_556, 2_316_197),
    "arch2": (2_853_141, 2_841_601, 2_706_068, 2_407_205),
}


@pytest.mark.parametrize("name", sorted(RELEASED_COUNTS))
def test_parameter_counts_match_the_paper(name):
    voc, nyu, search_total, search_no_aux = RELEASED_COUNTS[name]
    g = G.released(name)
    assert param_counts(abstract_variables(ModelSpec(g, DecoderSettings.released(21)))["params"])["without_aux"] == voc
    depth = ModelSpec(g, DecoderSettings.released(1), "depth")
    assert param_counts(abstract_variables(depth)["params"])["without_aux"] == nyu
    counts = param_counts(abstract_variables(ModelSpec(g, DecoderSettings.search(21)))["params"])
    assert (counts["total"], counts["without_aux"]) == (search_total, search_no_aux)


def test_output_strides_and_aux_heads():
    g = G.ARCH1  # blocks never use l1: output at 1/8
    spec = ModelSpec(g, DecoderSettings(num_classes=5, agg_size=8, repeats=1, aux_cell=True))
    model = spec.build()
    x = jnp.zeros((2, 67, 93, 3))
    variables = random_variables(spec, 0)  # model.init compiles op by op: minutes on a 2-core CPU
    logits, aux = model.apply(variables, x)
    assert logits.shape == (2, 9, 12, 5)  # 67 -> 34 -> 17 -> 9
    assert [a.shape[1:3] for a in aux] == [(5, 6), (9, 12), (5, 6)]  # b1=(l3,l4), b2=(l4,l2), b3=(b1,b1)
    logits_no_aux, none = model.apply(variables, x, with_aux=False)
    assert none == [] and np.allclose(logits, logits_no_aux)


def test_train_mode_uses_batch_statistics_and_updates_them():
    spec = ModelSpec(G.ARCH2, DecoderSettings(num_classes=3, agg_size=8, repeats=1, aux_cell=False))
    model = spec.build()
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
    variables = random_variables(spec, 0)
    eval_logits, _ = model.apply(variables, x, train=False)
    (train_logits, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(eval_logits, train_logits)
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("op_id", range(G.NUM_OPS))
def test_every_op_keeps_shape(op_id):
    op = make_op(op_id, 6, 2, name=f"op{op_id}")
    x = jax.random.normal(jax.random.PRNGKey(op_id), (2, 7, 9, 6))
    variables = op.init(jax.random.PRNGKey(0), x, train=False)
    y = op.apply(variables, x, train=False)
    assert y.shape == x.shape
    if op_id == 9:
        assert np.array_equal(y, x)
    if op_id == 10:
        assert not np.any(y)
        assert np.isnan(op.apply(variables, x.at[0, 0, 0, 0].set(jnp.nan), train=False)).any()  # as official
    if op_id == 4:  # global pool: constant over space
        assert np.allclose(y, y[:, :1, :1])


def test_bilinear_resize_matches_pytorch_align_corners_false():
    # Reference values from the formula in PyTorch's upsample_bilinear2d (align_corners=False), computed by hand:
    # 1-D 3 -> 5: src = (dst + 0.5) * 0.6 - 0.5 = [-0.2 -> 0, 0.4, 1.0, 1.6, 2.2 -> clamp 2]
    x = jnp.array([0.0, 10.0, 20.0]).reshape(1, 3, 1, 1)
    y = np.asarray(resize_bilinear(x, (5, 1))).ravel()
    assert np.allclose(y, [0.0, 4.0, 10.0, 16.0, 20.0])
    # downsampling reads two source pixels only (no antialiasing): 4 -> 2, src = [0.5, 2.5]
    x = jnp.array([0.0, 1.0, 2.0, 100.0]).reshape(1, 4, 1, 1)
    assert np.allclose(np.asarray(resize_bilinear(x, (2, 1))).ravel(), [0.5, 51.0])


def test_nearest_resize_is_pytorch_legacy_nearest():
    labels = np.arange(10)[None, :, None].repeat(3, 2)
    out = resize_nearest(labels, (4, 3))
    assert out[0, :, 0].tolist() == [0, 2, 5, 7]  # floor(dst * 10 / 4)


def test_every_variable_has_one_official_key():
    spec = ModelSpec(G.parse([[7, [0, 0, 6, 3], [2, 1, 4, 2], [4, 1, 6, 1]], [[0, 0], [3, 2], [2, 0]]]))
    keys = torch_layout.expected_keys(abstract_variables(spec))
    assert len(keys) == len(set(keys))
    assert "decoder.cells.0.op_1._ops.0.op.sep_0.0.weight" in keys
    assert "decoder.aux_clfs.2.aux_cell._ops.8.1.running_var" in keys
    assert "encoder.layer2.0.conv.0.weight" in keys and "decoder.conv_clf.bias" in keys

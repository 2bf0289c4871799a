"""Audit: the stage-2 segmentation loss (``fdn.candidate.steps.stage2_loss``), which the stage-2 tests replace
by a given gradient: main NLL + aux_weight x the *sum* of the aux heads' NLLs, 255 ignored."""

import types

import jax.numpy as jnp
import numpy as np
import pytest

from fdn.candidate import steps


def test_stage2_loss_is_main_plus_weighted_sum_of_aux_by_hand():
    # K = 2 classes, 2x2 labels with one ignored pixel: three labelled pixels, all class 1.
    # main logits (0, 0) -> p = 1/2: NLL log 2; aux head 1 the same: log 2; aux head 2 logits (0, log 3) -> p = 3/4:
    # NLL log(4/3). Loss = log 2 + 0.15 x (log 2 + log(4/3)).
    labels = jnp.asarray([[[1, 1], [1, 255]]])
    main = jnp.zeros((1, 2, 2, 2))
    aux1 = jnp.zeros((1, 2, 2, 2))
    aux2 = jnp.zeros((1, 2, 2, 2)).at[..., 1].set(np.log(3.0))

    def predict(params, batch_stats, images, labels_in, plan):
        return main, labels_in, [aux1, aux2], batch_stats

    cfg = types.SimpleNamespace(aux_weight=0.15)
    loss, (parts, stats) = steps.stage2_loss(predict, {}, {"s": 1}, None, labels, None, cfg)
    assert float(parts["nll"]) == pytest.approx(np.log(2.0), rel=1e-6)
    np.testing.assert_allclose(parts["aux"], [np.log(2.0), np.log(4 / 3)], rtol=1e-6)
    assert float(loss) == pytest.approx(np.log(2.0) + 0.15 * (np.log(2.0) + np.log(4 / 3)), rel=1e-6)
    assert stats == {"s": 1}

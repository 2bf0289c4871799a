"""Losses against direct NumPy formulas (PyTorch's NLLLoss/MSELoss definitions) and Polyak averaging."""

import numpy as np
import pytest

from fdn import losses, polyak
from fdn.models.resize import resize_bilinear


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_nll_averages_over_labelled_pixels_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3, 4))
    labels[0, 0] = 255
    logp = _log_softmax(logits.astype(np.float64))
    keep = labels != 255
    want = -np.take_along_axis(logp, np.where(keep, labels, 0)[..., None], -1)[..., 0][keep].mean()
    assert float(losses.nll(logits, labels)) == pytest.approx(want, rel=1e-5)


def test_nll_of_fully_ignored_batch_is_zero():
    assert float(losses.nll(np.zeros((1, 2, 2, 3), np.float32), np.full((1, 2, 2), 255))) == 0.0


def test_kd_mse_is_mean_over_all_elements():
    a = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    assert float(losses.kd_mse(a, a + 2)) == pytest.approx(4.0)


def test_aux_nll_resizes_each_head_to_the_label_size():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (2, 8, 8))
    heads = [rng.normal(size=(2, s, s, 4)).astype(np.float32) for s in (4, 8)]
    got = np.asarray(losses.aux_nll(heads, labels))
    want = [float(losses.nll(resize_bilinear(h, (8, 8)), labels)) for h in heads]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_berhu_by_hand():
    target = np.array([[[1.0, 2.0, 0.0, 3.0]]])  # 0 = missing depth
    pred = np.array([[[1.5, 2.0, 7.0, 8.0]]])
    err = np.array([0.5, 0.0, 5.0])
    c = 0.2 * 5.0
    per = np.where(err <= c, err, (err**2 + c**2) / (2 * c))
    assert float(losses.berhu(pred, target)) == pytest.approx(per.mean())
    assert float(losses.berhu(pred[..., None], target)) == pytest.approx(per.mean())


def test_polyak_update_and_write_back():
    avg = polyak.init({"w": np.array([1.0, 2.0])})
    np.testing.assert_array_equal(avg["w"], [1.0, 2.0])
    new = polyak.update(avg, {"w": np.array([3.0, 4.0])}, 0.9)
    np.testing.assert_allclose(new["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * 4])
    assert polyak.write_back(new, {"w": None}) is new

"""Audit: behaviours of the losses and metrics that the main tests left unchecked (found by mutation)."""

import jax
import numpy as np
import pytest

from fdn import losses, metrics


def test_depth_delta_thresholds_are_strict():
    # Ratios exactly 1.25, 1.25^2 = 25/16 and 1.25^3 = 125/64 (all exact in float32), once as pred/target and once
    # as target/pred: "delta < 1.25^k" is strict, so a ratio on the threshold does not count.
    target = np.array([[[4.0, 16.0, 64.0, 5.0, 25.0, 125.0]]])
    pred = np.array([[[5.0, 25.0, 125.0, 4.0, 16.0, 64.0]]])
    m = metrics.depth_metrics(metrics.depth_sums(pred, target))
    assert m["delta1"] == 0.0  # no ratio below 1.25
    assert m["delta2"] == pytest.approx(2 / 6)  # only the two 1.25 ratios are below 1.5625
    assert m["delta3"] == pytest.approx(4 / 6)  # the 1.953125 ratios are not below 1.953125


def test_nll_skips_an_ignore_label_inside_the_class_range():
    # K = 2. Pixel A: label 0, logits (0, 0) -> p = 1/2, nll = log 2. Pixel B: label 1, logits (0, log 3) -> p = 3/4.
    # With ignore_label = 1, pixel B is skipped: the mean is over pixel A alone, log 2.
    logits = np.array([[[[0.0, 0.0], [0.0, np.log(3.0)]]]], np.float32)
    labels = np.array([[[0, 1]]])
    assert float(losses.nll(logits, labels, ignore_label=1)) == pytest.approx(np.log(2.0), rel=1e-6)
    assert float(losses.nll(logits, labels)) == pytest.approx((np.log(2.0) + np.log(4 / 3)) / 2, rel=1e-6)


def test_berhu_threshold_is_held_constant_in_the_gradient():
    # err = |pred - target| = (0.5, 0.2, 5); c = 0.2 * 5 = 1. Pixels 1, 2 are in the L1 part: d/dpred = +1 / 3
    # (pred above target). Pixel 3 is in the quadratic part (e^2 + c^2) / (2c) with c held constant:
    # d/dpred = e / c / 3 = 5 / 3. (Differentiating through c would add 0.2 * (1/2 - e^2 / (2 c^2)) / 3 = -0.8.)
    target = np.array([[[1.0, 2.0, 3.0]]], np.float32)
    pred = np.array([[[1.5, 2.2, 8.0]]], np.float32)
    grad = np.asarray(jax.grad(losses.berhu)(pred, target))
    np.testing.assert_allclose(grad[0, 0], [1 / 3, 1 / 3, 5 / 3], rtol=1e-5)


def test_a_single_present_class_is_scored():
    # Background omitted, one foreground class: cm = [[5, 1], [2, 4]]. Class 1: tp 4, GT 6, predicted 5,
    # IoU = 4 / (6 + 5 - 4) = 4/7, accuracy 4/6; fwIoU over one class = its IoU.
    m = metrics.segmentation_metrics(np.array([[5, 1], [2, 4]]))
    assert m["miou"] == pytest.approx(4 / 7) and m["macc"] == pytest.approx(2 / 3)
    assert m["fwiou"] == pytest.approx(4 / 7)
    assert m["reward"] == pytest.approx((4 / 7 * 2 / 3 * 4 / 7) ** (1 / 3))

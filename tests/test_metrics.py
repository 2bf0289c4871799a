"""Confusion matrix and reward against hand-computed values; depth metrics on a worked example."""

import numpy as np
import pytest

from fdn import metrics


def test_confusion_matrix_counts_gt_rows_pred_columns_and_skips_ignored():
    labels = np.array([[[0, 1, 1, 2], [2, 255, 3, 1]]])  # 3 >= K and 255 are skipped
    pred = np.array([[[0, 1, 2, 2], [0, 1, 1, 1]]])
    cm = np.asarray(metrics.confusion_matrix(pred, labels, 3))
    want = np.array([[1, 0, 0], [0, 2, 1], [1, 0, 1]])
    np.testing.assert_array_equal(cm, want)


def test_confusion_matrix_skips_padding_images():
    labels = np.zeros((2, 2, 2), np.uint8)
    pred = np.ones((2, 2, 2), np.int32)
    cm = np.asarray(metrics.confusion_matrix(pred, labels, 2, np.array([True, False])))
    np.testing.assert_array_equal(cm, [[0, 4], [0, 0]])


def test_reward_by_hand():
    # rows = GT, columns = prediction; class 0 (background) omitted; class 3 absent everywhere.
    cm = np.array([[50, 5, 5, 0], [4, 30, 6, 0], [2, 8, 10, 0], [0, 0, 0, 0]])
    m = metrics.segmentation_metrics(cm)
    iou1, iou2 = 30 / (40 + 43 - 30), 10 / (20 + 21 - 10)
    acc1, acc2 = 30 / 40, 10 / 20
    fw = (iou1 * 40 + iou2 * 20) / 60
    assert m["miou"] == pytest.approx((iou1 + iou2) / 2)
    assert m["macc"] == pytest.approx((acc1 + acc2) / 2)
    assert m["fwiou"] == pytest.approx(fw)
    assert m["reward"] == pytest.approx(((iou1 + iou2) / 2 * (acc1 + acc2) / 2 * fw) ** (1 / 3))


def test_predicted_but_absent_class_counts_with_accuracy_one():
    cm = np.array(
        [[5, 0, 1], [0, 4, 0], [0, 0, 0]]
    )  # class 2 never in GT but predicted once: IoU 0, accuracy 1 (official)
    m = metrics.segmentation_metrics(cm)
    assert m["miou"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["macc"] == pytest.approx(1.0)
    assert m["fwiou"] == pytest.approx(1.0)


def test_background_only_prediction_scores_zero():
    cm = np.array([[10, 0, 0], [7, 0, 0], [3, 0, 0]])
    assert metrics.segmentation_metrics(cm)["reward"] == 0.0


def test_omit_list_and_no_present_class():
    cm = np.array([[3, 1], [1, 3]])
    assert metrics.segmentation_metrics(cm, omit=())["miou"] == pytest.approx(0.6)
    assert metrics.segmentation_metrics(np.zeros((3, 3), int))["reward"] == 0.0


def test_class_table_lists_every_class():
    table = metrics.class_table(np.array([[2, 0], [0, 0]]), ["bg", "cat"])
    lines = table.splitlines()
    assert len(lines) == 3 and "omitted" in lines[1] and "absent" in lines[2]


def test_depth_metrics_by_hand():
    target = np.array([[[1.0, 2.0], [4.0, 0.0]]])  # 0 = missing, ignored
    pred = np.array([[[1.0, 3.0], [2.0, 9.0]]])
    m = metrics.depth_metrics(metrics.depth_sums(pred, target))
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 1 + 4) / 3))
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 0.5 + 1.0) / 3)
    assert m["log_rmse"] == pytest.approx(np.sqrt((0 + np.log(1.5) ** 2 + np.log(2) ** 2) / 3), rel=1e-5)
    assert m["log10"] == pytest.approx((0 + np.log10(1.5) + np.log10(2)) / 3, rel=1e-5)
    assert m["delta1"] == pytest.approx(1 / 3)
    assert m["delta2"] == pytest.approx(2 / 3)  # 1.5 < 1.5625
    assert m["delta3"] == pytest.approx(2 / 3)  # 2.0 > 1.953

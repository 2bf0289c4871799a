"""MPII's PCKh in NumPy, as SimpleBaseline's ``MPIIDataset.evaluate`` (the numbers its tables report).

A joint is correct when its distance to the ground truth is at most ``threshold`` x the person's head size
(0.6 x the head-box diagonal: ``fdn.data.mpii.head_size``); only joints visible in the ground truth count. Per
joint PCKh is 100 x correct / visible; the mean leaves out pelvis and thorax and weights each joint by its
visible count; the table's groups average the left and right joint (``fdn.pose.joints.PCKH_GROUPS``). The
reference's "Mean@0.1" is the mean at threshold 0.11 (``pckAll[11]`` of ``arange(0, 0.51, 0.01)``); ``table``
reports it under that name with the true threshold.
"""

from __future__ import annotations

import numpy as np

from fdn.pose import joints

MEAN_AT_01_THRESHOLD = 0.11  # the reference's "Mean@0.1" (see the module docstring)


def hits(pred, gt, visible, head_size, threshold=0.5):
    """(correct (N, K) bool, visible (N, K) bool): within ``threshold`` x ``head_size`` (N,) and visible."""
    pred, gt = np.asarray(pred, np.float64)[..., :2], np.asarray(gt, np.float64)[..., :2]
    visible = np.asarray(visible) > 0
    head = np.asarray(head_size, np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.linalg.norm(pred - gt, axis=-1) / head
    return visible & (scaled <= threshold), visible


def per_joint(pred, gt, visible, head_size, threshold=0.5):
    """(PCKh per joint (K,) in percent, visible count per joint (K,)); NaN for a joint never visible."""
    correct, visible = hits(pred, gt, visible, head_size, threshold)
    count = visible.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * correct.sum(axis=0) / count, count


def mean(pckh, count, excluded=joints.PCKH_EXCLUDED_FROM_MEAN) -> float:
    """The visible-count-weighted mean over joints, leaving out ``excluded`` (pelvis and thorax)."""
    weights = np.asarray(count, np.float64).copy()
    weights[list(excluded)] = 0.0
    weights /= weights.sum()
    return float(np.nansum(np.asarray(pckh, np.float64) * weights))


def table(pred, gt, visible, head_size, threshold=0.5) -> dict:
    """The reference's table: Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean and Mean@0.1 (percent)."""
    pckh, count = per_joint(pred, gt, visible, head_size, threshold)
    out = {name: float(np.mean(pckh[list(group)])) for name, group in joints.PCKH_GROUPS}
    out["Mean"] = mean(pckh, count)
    low, low_count = per_joint(pred, gt, visible, head_size, MEAN_AT_01_THRESHOLD)
    out["Mean@0.1"] = mean(low, low_count)
    return out

"""Validation metrics: the search reward (paper.md 3.5) and the usual segmentation and depth scores.

The reward is computed from a confusion matrix exactly as the official ``validate``:

* ``cm[gt, pred]`` counts pixels; labels ``>= num_classes`` (255 = ignore, padding) are skipped;
* per class: IoU = tp / (gt + pred - tp), accuracy = tp / gt; a class is *present* when its union is
  non-zero, and classes in ``omit`` (background by default) are left out;
* mIoU and mean accuracy average over the present classes, fwIoU weights IoUs by GT pixel counts;
* reward = (mIoU * mAcc * fwIoU)^(1/3).

Two official quirks are kept because they move rewards: a class that is predicted but absent from the GT
counts with accuracy 1 (the official accuracies start at 1), and a model that predicts only background gets
mIoU 0 and so reward exactly 0, a legitimate value for a random decoder. One is not: the official code finds
present classes by ``IoU != 1``, which would also drop a perfectly segmented class; here presence is
``union > 0``. With no present class at all every metric is 0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_OMIT = (0,)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def confusion_matrix(pred, labels, num_classes: int, valid=None):
    """(K, K) int32 counts ``cm[gt, pred]`` of integer ``pred`` and ``labels`` of equal shape (N, ...).

    Pixels whose label is outside ``0..K-1`` are ignored, as are whole images where ``valid`` (N,) is False
    (the padding slots of the evaluation batches).
    """
    labels = labels.astype(jnp.int32)
    pred = pred.astype(jnp.int32)
    keep = (labels >= 0) & (labels < num_classes)
    if valid is not None:
        keep = keep & jnp.reshape(valid, (-1,) + (1,) * (labels.ndim - 1))
    flat_index = labels * num_classes + jnp.clip(pred, 0, num_classes - 1)
    index = jnp.where(keep, flat_index, num_classes * num_classes)
    counts = jnp.bincount(index.ravel(), length=num_classes * num_classes + 1)
    return counts[:-1].reshape(num_classes, num_classes).astype(jnp.int32)


def per_class(cm) -> dict[str, np.ndarray]:
    """Per-class ``iou``, ``acc`` (1 where the class has no GT pixel, as the official code), ``gt`` pixel
    counts, ``pred`` counts and ``present`` (union > 0), from a (K, K) confusion matrix."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    union = gt + pred - tp
    iou = np.divide(tp, union, out=np.ones_like(tp), where=union > 0)
    acc = np.divide(tp, gt, out=np.ones_like(tp), where=gt > 0)
    return {"iou": iou, "acc": acc, "gt": gt, "pred": pred, "present": union > 0}


def segmentation_metrics(cm, omit: Sequence[int] = DEFAULT_OMIT) -> dict[str, float]:
    """``miou``, ``macc``, ``fwiou`` and ``reward`` (their geometric mean), over present classes not in
    ``omit``."""
    c = per_class(cm)
    mask = c["present"].copy()
    for k in omit:
        if 0 <= k < mask.size:
            mask[k] = False
    if not mask.any():
        return {"miou": 0.0, "macc": 0.0, "fwiou": 0.0, "reward": 0.0}
    iou, acc, gt = c["iou"][mask], c["acc"][mask], c["gt"][mask]
    miou = float(iou.mean())
    macc = float(acc.mean())
    fwiou = float((iou * gt).sum() / gt.sum()) if gt.sum() > 0 else 0.0
    return {"miou": miou, "macc": macc, "fwiou": fwiou, "reward": reward(miou, macc, fwiou)}


def reward(miou: float, macc: float, fwiou: float) -> float:
    """Geometric mean of the three scores (0 if any is 0)."""
    prod = max(miou, 0.0) * max(macc, 0.0) * max(fwiou, 0.0)
    return float(prod ** (1.0 / 3.0))


def class_table(cm, class_names: Sequence[str] | None = None, omit: Sequence[int] = DEFAULT_OMIT) -> str:
    """A plain-text per-class table (IoU, accuracy, GT pixels), marking omitted and absent classes."""
    c = per_class(cm)
    k = len(c["iou"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    width = max(5, max(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}  {'GT px':>12}  note"]
    for i in range(k):
        note = "omitted" if i in omit else ("" if c["present"][i] else "absent")
        row = f"{names[i]:<{width}}  {c['iou'][i]:6.3f}  {c['acc'][i]:6.3f}  {int(c['gt'][i]):12d}"
        lines.append(f"{row}  {note}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ depth
DEPTH_KEYS = ("rmse", "log_rmse", "abs_rel", "sq_rel", "log10", "delta1", "delta2", "delta3")


@jax.jit
def depth_sums(pred, target):
    """Sums over pixels with ``target > 0`` (and ``pred`` clamped to a tiny positive value for the logs) from
    which ``depth_metrics`` computes the usual scores; add them over batches, then call ``depth_metrics``."""
    pred = pred.astype(jnp.float32)
    if pred.ndim == target.ndim + 1:
        pred = pred[..., 0]
    target = target.astype(jnp.float32)
    valid = target > 0
    t = jnp.where(valid, target, 1.0)
    p = jnp.where(valid, jnp.maximum(pred, 1e-6), 1.0)
    ratio = jnp.maximum(p / t, t / p)

    def total(x):
        return jnp.sum(jnp.where(valid, x, 0.0))

    return {
        "count": jnp.sum(valid).astype(jnp.float32),
        "sq": total(jnp.square(p - t)),
        "log_sq": total(jnp.square(jnp.log(p) - jnp.log(t))),
        "abs_rel": total(jnp.abs(p - t) / t),
        "sq_rel": total(jnp.square(p - t) / t),
        "log10": total(jnp.abs(jnp.log10(p) - jnp.log10(t))),
        "delta1": total((ratio < 1.25).astype(jnp.float32)),
        "delta2": total((ratio < 1.25**2).astype(jnp.float32)),
        "delta3": total((ratio < 1.25**3).astype(jnp.float32)),
    }


def depth_metrics(sums) -> dict[str, float]:
    """RMSE, log-RMSE, abs rel, sq rel, log10 and delta < 1.25^k from (accumulated) ``depth_sums``."""
    s = {k: float(v) for k, v in jax.device_get(sums).items()}
    n = max(s["count"], 1.0)
    return {
        "rmse": float(np.sqrt(s["sq"] / n)),
        "log_rmse": float(np.sqrt(s["log_sq"] / n)),
        "abs_rel": s["abs_rel"] / n,
        "sq_rel": s["sq_rel"] / n,
        "log10": s["log10"] / n,
        "delta1": s["delta1"] / n,
        "delta2": s["delta2"] / n,
        "delta3": s["delta3"] / n,
    }

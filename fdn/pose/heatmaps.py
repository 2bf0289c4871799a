"""Keypoints <-> heatmaps as SimpleBaseline (pose-notes.md 1.2): targets, loss, decoding and the flip test.

Why these rules: they are the reference's, so its numbers (sigma 2, stride 4, the quarter-pixel shift) carry
over. Coordinates are input pixels, 0-based with pixel centres at integers; a heatmap cell ``c`` stands for
input pixel ``c * STRIDE``.

* ``render``: one unnormalised Gaussian (peak 1, ``SIGMA``) per joint, centred on the *integer* cell
  ``floor(x / STRIDE + 0.5)`` and cut to a window of radius ``3 * SIGMA``; the joint's weight is its
  visibility, and 0 when that window lies wholly off the map (then the target is all zero). It runs on the
  device inside the loss, so the data never carries heatmaps. (The reference truncates with ``int()``, which
  rounds towards zero; ``floor`` differs only for joints left of / above the map, which get weight 0 anyway
  unless they are within the window radius.)
* ``loss``: ``0.5 * MSE(pred * w, target * w)`` per joint, averaged over batch, pixels and joints.
* ``decode``: argmax per joint, then +-0.25 cell towards the higher neighbour on each axis where both
  neighbours exist (the reference shifts only when ``1 < p < size - 1`` on both axes; ``0 < p`` is the rule it
  means), and the peak value as the joint's confidence.
* ``flip_back``: heatmaps of the mirrored image mirrored back, joints permuted by the batch's ``keypoint_flip``
  (left <-> right; ``fdn.pose.joints.flip_permutation`` is the one table of it) and shifted one cell right (the
  reference's ``SHIFT_HEATMAP``), to be averaged with the plain output.
"""

from __future__ import annotations

import jax.numpy as jnp

STRIDE = 4  # input pixels per heatmap cell: the reference's 256 -> 64
SIGMA = 2.0


def heatmap_size(input_size) -> tuple[int, int]:
    """(h, w) of the stride-4 heatmaps of an (H, W) input: ``ceil(H / 4)``, as a stride-4 'SAME' feature."""
    return tuple(-(-int(s) // STRIDE) for s in input_size)


def render(keypoints, size, sigma: float = SIGMA, stride: int = STRIDE):
    """``(targets (N, h, w, K) float32, weights (N, K) float32)`` from ``keypoints`` (N, K, 3) = (x, y, v)."""
    keypoints = jnp.asarray(keypoints, jnp.float32)
    h, w = int(size[0]), int(size[1])
    radius = 3.0 * sigma
    mu = jnp.floor(keypoints[..., :2] / stride + 0.5)  # (N, K, 2) integer cells
    mx, my = mu[..., 0], mu[..., 1]
    on_map = (mx + radius >= 0) & (my + radius >= 0) & (mx - radius < w) & (my - radius < h)
    weights = jnp.where(on_map & (keypoints[..., 2] > 0.5), 1.0, 0.0)
    dx = jnp.arange(w, dtype=jnp.float32)[None, None, :, None] - mx[:, None, None, :]  # (N, 1, w, K)
    dy = jnp.arange(h, dtype=jnp.float32)[None, :, None, None] - my[:, None, None, :]  # (N, h, 1, K)
    inside = (jnp.abs(dx) <= radius) & (jnp.abs(dy) <= radius)
    gauss = jnp.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))
    targets = jnp.where(inside, gauss, 0.0) * weights[:, None, None, :]
    return targets.astype(jnp.float32), weights


def loss(pred, targets, weights):
    """``0.5 * mean((pred * w - target * w)^2)`` over batch, pixels and joints (the reference's
    ``JointsMSELoss`` with target weights); ``pred`` and ``targets`` (N, h, w, K), ``weights`` (N, K)."""
    w = weights[:, None, None, :]
    diff = pred.astype(jnp.float32) * w - targets * w
    return 0.5 * jnp.mean(jnp.square(diff))


def decode(heatmaps):
    """``(cells (N, K, 2) float32 as (x, y) in heatmap cells, peaks (N, K))`` of (N, h, w, K) heatmaps."""
    heatmaps = heatmaps.astype(jnp.float32)
    n, h, w, k = heatmaps.shape
    flat = jnp.moveaxis(heatmaps, -1, 1).reshape(n, k, h * w)
    index = jnp.argmax(flat, axis=-1)
    peaks = jnp.max(flat, axis=-1)
    py, px = index // w, index % w

    def at(y, x):
        y, x = jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1)
        return jnp.take_along_axis(flat, (y * w + x)[..., None], axis=-1)[..., 0]

    shift_x = jnp.where((px > 0) & (px < w - 1), 0.25 * jnp.sign(at(py, px + 1) - at(py, px - 1)), 0.0)
    shift_y = jnp.where((py > 0) & (py < h - 1), 0.25 * jnp.sign(at(py + 1, px) - at(py - 1, px)), 0.0)
    cells = jnp.stack([px + shift_x, py + shift_y], axis=-1).astype(jnp.float32)
    return cells, peaks


def to_input_pixels(cells, stride: int = STRIDE):
    """Heatmap cells -> input pixel coordinates (cell ``c`` is pixel ``c * stride``)."""
    return cells * stride


def flip_back(heatmaps, flip_index):
    """Heatmaps of a left-right mirrored input, mapped back onto the original: mirrored, joints permuted
    (``flip_index[j]`` is the joint that ``j`` becomes when mirrored), shifted one cell to the right."""
    mirrored = heatmaps[:, :, ::-1, :]
    swapped = jnp.take(mirrored, jnp.asarray(flip_index), axis=-1)
    return jnp.concatenate([swapped[:, :, :1], swapped[:, :, :-1]], axis=2)


def visible(keypoints):
    """(N, K) float32: 1 for the joints PCK counts (``v`` > 0.5), 0 for the others."""
    return (jnp.asarray(keypoints, jnp.float32)[..., 2] > 0.5).astype(jnp.float32)


def pck_hits(pred_xy, keypoints, norm, threshold: float = 0.5):
    """``(hits, counted)`` (N, K) float32: visible joints whose prediction lies within ``threshold * norm``
    (input pixels; ``norm`` (N,)) of the ground truth, and the visible joints."""
    gt = jnp.asarray(keypoints, jnp.float32)
    dist = jnp.sqrt(jnp.sum(jnp.square(pred_xy - gt[..., :2]), axis=-1))
    counted = visible(gt)
    hits = (dist <= threshold * jnp.asarray(norm, jnp.float32)[:, None]).astype(jnp.float32) * counted
    return hits, counted

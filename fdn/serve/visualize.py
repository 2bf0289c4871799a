"""Colour maps for predictions: the VOC palette for class maps, a perceptual map for depth, joints on the image."""

from __future__ import annotations

import numpy as np
from PIL import Image


def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: PASCAL VOC's colour map (class c's colour from the bits of c), 255 -> (224, 224, 192)."""
    palette = np.zeros((n, 3), np.uint8)
    for c in range(n):
        r = g = b = 0
        v = c
        for shift in range(7, -1, -1):
            r |= ((v >> 0) & 1) << shift
            g |= ((v >> 1) & 1) << shift
            b |= ((v >> 2) & 1) << shift
            v >>= 3
        palette[c] = (r, g, b)
    return palette


def class_map_image(classes: np.ndarray) -> Image.Image:
    """A palette PNG image (mode 'P', VOC colours) whose pixel values are the class ids."""
    im = Image.fromarray(np.asarray(classes, np.uint8), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    return im


def depth_image(depth: np.ndarray, max_depth: float = 8.0) -> Image.Image:
    """An RGB rendering of a depth map in metres over [0, max_depth] with matplotlib's 'plasma' map."""
    from matplotlib import colormaps

    t = np.clip(np.asarray(depth, np.float32) / max_depth, 0.0, 1.0)
    rgb = (colormaps["plasma"](t)[..., :3] * 255).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def skeleton_image(joints: np.ndarray, image: np.ndarray, edges=(), radius: int = 2) -> Image.Image:
    """``image`` (H, W, 3) uint8 with ``joints`` (K, 3) = (x, y, v or peak) drawn on it: a dot per joint with
    ``v > 0`` in its VOC colour (joint k has class k + 1's), and a line for each ``(a, b)`` in ``edges``
    whose ends are both drawn. (Predictions whose peak is <= 0 are left out, as the reference masks them.)"""
    from PIL import ImageDraw

    im = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(im)
    joints = np.asarray(joints, np.float32).reshape(-1, 3)
    shown = joints[:, 2] > 0
    colours = [tuple(int(c) for c in rgb) for rgb in voc_palette(len(joints) + 1)[1:]]
    for a, b in edges:
        if a < len(joints) and b < len(joints) and shown[a] and shown[b]:
            draw.line([tuple(joints[a, :2]), tuple(joints[b, :2])], fill=(255, 255, 255), width=1)
    for k, (x, y, _) in enumerate(joints):
        if shown[k]:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colours[k], outline=(0, 0, 0))
    return im

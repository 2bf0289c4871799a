"""The person crop as a 2x3 affine map: box -> fixed-aspect crop, random scale and rotation, horizontal flip.

Coordinates are pixel coordinates with pixel *centres* at integers (0-based) in both the image and the crop,
so a crop of width W covers x in [-0.5, W - 0.5]. ``crop_affine`` maps the box of ``box_size`` around
``center`` onto the crop exactly: the box centre lands on ((W - 1) / 2, (H - 1) / 2) and the box edges on the
crop's outer pixel edges; the rotation turns the box about its centre (the direction SimpleBaseline's
``get_affine_transform`` uses), and the flip mirrors the crop (x -> W - 1 - x), so mirroring twice is the
identity and a flipped joint lands exactly where the mirrored pixel does. Images are warped with PIL
(bilinear), whose own convention puts pixel centres at +0.5; ``warp_image`` converts.

Why affine maps rather than crop-then-resize: one map carries the whole augmentation, is applied to the image
and the joints alike (so they cannot disagree), and its inverse takes predictions back to the original image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def fixed_aspect(box_size, aspect: float, box_scale: float = 1.0) -> np.ndarray:
    """(w, h) grown to width/height ``aspect`` (the longer side kept), times ``box_scale``.

    As SimpleBaseline's ``_box2cs``: a person box is widened or heightened, never cut, to the crop's aspect, and
    enlarged by 1.25 so the limbs near the box edge keep some context.
    """
    w, h = (float(v) for v in box_size)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return np.array([w, h], np.float64) * box_scale


def crop_affine(center, box_size, output_size, rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """The 2x3 map from image pixels to crop pixels (``output_size`` = (H, W)) for the box ``box_size`` = (w, h)
    around ``center`` = (x, y), rotated by ``rotation_deg`` and mirrored when ``flip``.

    The box must have the crop's aspect (``fixed_aspect``); its width sets the scale.
    """
    out_h, out_w = (int(v) for v in output_size)
    scale = out_w / float(box_size[0])
    r = math.radians(rotation_deg)
    c, s = math.cos(r), math.sin(r)
    linear = scale * np.array([[c, s], [-s, c]])
    offset = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - linear @ np.asarray(center, np.float64)
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    if flip:
        matrix = compose(np.array([[-1.0, 0.0, out_w - 1.0], [0.0, 1.0, 0.0]]), matrix)
    return matrix


def compose(outer, inner) -> np.ndarray:
    """The 2x3 map ``outer`` after ``inner``."""
    full = _full(outer) @ _full(inner)
    return full[:2]


def invert(matrix) -> np.ndarray:
    """The inverse 2x3 map (crop -> image for a ``crop_affine``: predictions back to the original image)."""
    return np.linalg.inv(_full(matrix))[:2]


def apply(matrix, points) -> np.ndarray:
    """``matrix`` applied to (..., 2) points."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def scale_of(matrix) -> float:
    """How many crop pixels one image pixel becomes (the map's isotropic scale: distances and norms scale by it)."""
    return float(math.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))


def warp_image(image, matrix, output_size, fill=(0, 0, 0)) -> np.ndarray:
    """The (H, W, C) uint8 crop of ``image`` under the image->crop map ``matrix``, bilinear, ``fill`` outside."""
    out_h, out_w = (int(v) for v in output_size)
    inverse = invert(matrix)  # crop -> image, what PIL samples with
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    # PIL puts pixel centres at +0.5 in both images: shift into and out of its convention.
    c = c + 0.5 - 0.5 * (a + b)
    f = f + 0.5 - 0.5 * (d + e)
    pil = Image.fromarray(np.ascontiguousarray(image))
    warped = pil.transform(
        (out_w, out_h), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR, fillcolor=tuple(fill)
    )
    return np.asarray(warped)


def _full(matrix) -> np.ndarray:
    return np.concatenate([np.asarray(matrix, np.float64), [[0.0, 0.0, 1.0]]], axis=0)

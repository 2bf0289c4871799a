"""The paper's training augmentation (``fdn.data.augment.TrainTransform``) as a pure JAX function.

Why: at the target throughput the accelerator eats 500-1,000 crops/s, more than PIL on a few host cores can
scale, mirror and crop. Here the images are decoded once (``fdn.data.device_source``) and every crop is a
function of a JAX key, so it runs where the model runs and is the same bits for the same key.

The distribution is the host's, draw for draw in kind (not in value: the host draws from NumPy's generator):

* ``s ~ U(scale_range)``, raised to ``min_side / shorter_side``; scaled size ``max(1, round(side * s))``
  (round half to even, as Python's ``round``);
* mirror with probability 1/2 (of the *scaled* image, as the host flips after resizing);
* crop start uniform in ``[0, scaled - crop]``, or ``-((crop - scaled) // 2)`` (centred padding) where the scaled
  image is shorter than the crop; padding is image 0 (after normalising), segmentation 255, depth 0.

Only the ``crop`` window of the scaled image is computed: each output pixel maps back to the source image
through the resize, so the cost does not depend on the scale.

Resizing follows Pillow's resampling (``libImaging/Resample.c``), not ``jax.image.scale_and_translate``, whose
cubic kernel is Keys' a = -0.5 too but which samples differently at the borders and rounds nothing:

* image: separable bicubic (a = -0.5), support widened by ``in / out`` when downscaling (antialias), taps
  normalised to sum 1, horizontal pass first, each pass rounded half up and clipped to uint8 as Pillow's
  8-bit passes are. Pillow computes the weights in double and applies them in 22-bit fixed point; here they
  are float32: a pass can round the other way, so a value differs by one grey level now and then (two at
  worst, where both passes do; measured on 40 crops 350 of the five VOC samples at the paper's VOC settings:
  0.017 % of the values off by one, none by two; tests/test_device_augment.py bounds it);
* label maps: nearest, source index ``floor((i + 0.5) * in / out)`` in exact integer arithmetic. Pillow
  accumulates ``in / out`` in double, which is exact for integer and half-integer ratios (equal there, tested)
  and can land on the other side of an exact tie elsewhere (500 -> 350: rows 17, 24, ... read one row
  further); 0.008 % of the label pixels differ in the measurement above.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fdn.conventions import IGNORE_LABEL, IMAGENET_MEAN, IMAGENET_STD

CUBIC_A = -0.5  # Pillow's (and Keys') bicubic parameter
CUBIC_SUPPORT = 2.0  # half-width of the kernel at scale 1


class CropParams(NamedTuple):
    """One example's draw: the scaled size, the mirror bit and the crop start in the scaled (mirrored) image."""

    height: jax.Array  # int32 scaled height
    width: jax.Array
    mirror: jax.Array  # bool
    top: jax.Array  # int32, negative = padding above
    left: jax.Array


def num_taps(sizes, scale_range) -> int:
    """Static number of bicubic taps that covers every draw of every image (a compile-time constant).

    The widest kernel belongs to the smallest scaled size ``round(side * low)`` (one less for float32 rounding
    of ``s``): ``2 * support * in / out`` source pixels, at most ``ceil`` of that many taps.
    """
    low = float(scale_range[0])
    widest = 1.0
    for side in (int(v) for hw in sizes for v in hw):
        widest = max(widest, side / max(1, round(side * low) - 1))
    return math.ceil(2 * CUBIC_SUPPORT * widest * (1 + 1e-6))


def _offset(key, scaled, crop):
    """Random crop start where the scaled side is at least the crop, else the centred (negative) padding."""
    random_start = jax.random.randint(key, (), 0, jnp.maximum(scaled - crop + 1, 1), jnp.int32)
    return jnp.where(scaled >= crop, random_start, -((crop - scaled) // 2))


def sample(key, height, width, crop_size, min_side, scale_range) -> CropParams:
    """Draw one example's scale, mirror and crop start from ``key`` for a source image of the given size."""
    k_scale, k_mirror, k_top, k_left = jax.random.split(key, 4)
    s = jax.random.uniform(k_scale, (), jnp.float32, scale_range[0], scale_range[1])
    shorter = jnp.minimum(height, width).astype(jnp.float32)
    s = jnp.where(shorter * s < min_side, jnp.float32(min_side) / shorter, s)
    new_h = jnp.maximum(1, jnp.round(height * s)).astype(jnp.int32)
    new_w = jnp.maximum(1, jnp.round(width * s)).astype(jnp.int32)
    mirror = jax.random.bernoulli(k_mirror)
    return CropParams(new_h, new_w, mirror, _offset(k_top, new_h, crop_size[0]), _offset(k_left, new_w, crop_size[1]))


def _cubic(x):
    """Pillow's ``bicubic_filter``: Keys' kernel with a = -0.5."""
    x = jnp.abs(x)
    a = CUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return jnp.where(x < 1.0, near, jnp.where(x < CUBIC_SUPPORT, far, 0.0))


def cubic_taps(positions, in_size, out_size, taps):
    """Source indices and weights, (n, taps) each, of scaled positions ``positions`` (Pillow's coefficients).

    Positions outside ``[0, out_size)`` get some in-range indices and arbitrary finite weights: the caller
    masks them as padding.
    """
    scale = in_size.astype(jnp.float32) / out_size.astype(jnp.float32)
    filterscale = jnp.maximum(scale, 1.0)
    support = CUBIC_SUPPORT * filterscale
    center = (positions.astype(jnp.float32) + 0.5) * scale
    first = jnp.maximum(jnp.floor(center - support + 0.5).astype(jnp.int32), 0)[:, None]
    stop = jnp.minimum(jnp.floor(center + support + 0.5).astype(jnp.int32), in_size)[:, None]
    index = first + jnp.arange(taps, dtype=jnp.int32)[None, :]
    weight = _cubic((index.astype(jnp.float32) - center[:, None] + 0.5) / filterscale)
    weight = jnp.where(index < stop, weight, 0.0)
    total = weight.sum(axis=1, keepdims=True)
    weight = weight / jnp.where(total == 0.0, 1.0, total)
    return jnp.clip(index, 0, in_size - 1), weight


def _round_to_uint8_levels(x):
    """Pillow's end of an 8-bit pass: round half up, clip to [0, 255] (kept as float32)."""
    return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def _resample(array, index, weight, axis):
    """Weighted sum of ``taps`` gathers along ``axis``, in a fixed order (the same bits in any batch)."""
    shape = [1] * array.ndim
    shape[axis] = index.shape[0]
    out = None
    for k in range(index.shape[1]):
        term = jnp.take(array, index[:, k], axis=axis) * weight[:, k].reshape(shape)
        out = term if out is None else out + term
    return out


def nearest_index(positions, in_size, out_size):
    """Pillow's NEAREST source index ``floor((i + 0.5) * in / out)``, exactly, clipped into the image."""
    index = ((2 * positions + 1) * in_size) // (2 * out_size)
    return jnp.clip(index, 0, in_size - 1)


def normalise(image):
    """``fdn.conventions.normalise`` in JAX: the same float32 operations on uint8-valued pixels."""
    return (image * jnp.float32(1 / 255) - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def crop(image, labels, height, width, params: CropParams, crop_size, taps):
    """The crop of one example for given ``params``: normalised float32 image and the label maps.

    ``image`` (H, W, 3) uint8 and ``labels`` {key: (H, W)} may be padded beyond the true ``height`` x
    ``width``; padding never reaches the output. Segmentation-like (integer) maps pad with 255, float maps
    (depth) with 0.
    """
    ch, cw = crop_size
    rows = params.top + jnp.arange(ch, dtype=jnp.int32)
    cols = params.left + jnp.arange(cw, dtype=jnp.int32)
    inside = ((rows >= 0) & (rows < params.height))[:, None] & ((cols >= 0) & (cols < params.width))[None, :]
    cols = jnp.where(params.mirror, params.width - 1 - cols, cols)  # column of the unmirrored scaled image

    col_index, col_weight = cubic_taps(cols, width, params.width, taps)
    row_index, row_weight = cubic_taps(rows, height, params.height, taps)
    pixels = _round_to_uint8_levels(_resample(image.astype(jnp.float32), col_index, col_weight, axis=1))
    pixels = _round_to_uint8_levels(_resample(pixels, row_index, row_weight, axis=0))
    out = {"image": jnp.where(inside[..., None], normalise(pixels), 0.0)}

    near_rows, near_cols = nearest_index(rows, height, params.height), nearest_index(cols, width, params.width)
    for key, label in labels.items():
        picked = label[near_rows][:, near_cols]
        pad = IGNORE_LABEL if jnp.issubdtype(label.dtype, jnp.integer) else 0
        out[key] = jnp.where(inside, picked, jnp.asarray(pad, label.dtype))
    return out


def augment(key, image, labels, height, width, *, crop_size, min_side, scale_range, taps):
    """One training crop drawn from ``key``: ``sample`` then ``crop`` (vmap it over a batch)."""
    params = sample(key, height, width, crop_size, min_side, scale_range)
    return crop(image, labels, height, width, params, crop_size, taps)

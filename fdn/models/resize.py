"""Resampling exactly as PyTorch does it (the official code's conventions), without antialiasing.

``jax.image.resize`` antialiases when it downsamples and so disagrees with ``F.interpolate``; the decoder, the
stage-1 cache and the reward all resample, so every resize in fdn goes through here. Interpolation weights are
computed on the host (shapes are static under jit) and applied as two small matrix products, which is exact,
cheap on CPU and maps to the MXU/tensor cores on accelerators.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=256)
def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of 1-D linear interpolation with half-pixel centres (``align_corners=False``)."""
    scale = in_size / out_size
    dst = np.arange(out_size, dtype=np.float64)
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)  # PyTorch clamps negative source coordinates to 0
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam1 = (src - i0).astype(np.float32)
    lam0 = (1.0 - lam1).astype(np.float32)
    m = np.zeros((out_size, in_size), np.float32)
    np.add.at(m, (np.arange(out_size), i0), lam0)
    np.add.at(m, (np.arange(out_size), i1), lam1)
    return m


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of NHWC ``x`` to ``size`` = (H, W), as ``F.interpolate(mode='bilinear',
    align_corners=False)``: no antialiasing, so downsampling reads only the two nearest source pixels."""
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = x.shape[1], x.shape[2]
    if (in_h, in_w) == (out_h, out_w):
        return x
    if in_h == 1 and in_w == 1:  # upsampling a 1x1 map is a broadcast (the GAP op)
        return jnp.broadcast_to(x, (x.shape[0], out_h, out_w, x.shape[3]))
    dtype = x.dtype
    mh = jnp.asarray(_bilinear_matrix(in_h, out_h), dtype)
    mw = jnp.asarray(_bilinear_matrix(in_w, out_w), dtype)
    if in_h != out_h:
        x = jnp.einsum("oh,nhwc->nowc", mh, x, precision=jax.lax.Precision.HIGHEST)
    if in_w != out_w:
        x = jnp.einsum("ow,nhwc->nhoc", mw, x, precision=jax.lax.Precision.HIGHEST)
    return x


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source indices of PyTorch's legacy ``mode='nearest'``: ``floor(dst * in / out)``."""
    return np.minimum(np.floor(np.arange(out_size) * (in_size / out_size)).astype(np.int64), in_size - 1)


def resize_nearest(x, size: tuple[int, int]):
    """Nearest resize of (N, H, W[, C]) labels as PyTorch's legacy nearest (used for label maps).

    Works on numpy and jax arrays alike; the gather keeps integer label values exact."""
    out_h, out_w = int(size[0]), int(size[1])
    rows = nearest_indices(x.shape[1], out_h)
    cols = nearest_indices(x.shape[2], out_w)
    return x[:, rows][:, :, cols]

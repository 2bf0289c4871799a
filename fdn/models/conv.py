"""Dense stride-1 convolution whose gradient stays fast inside loops and branches on XLA:CPU.

Measured on the 2-core CI CPU (batch 32, 16x16x48, 3x3 conv): XLA's own convolution gradients take 18 ms
(kernel) and 5 ms (input) at the top level of a program but 420 ms and 96 ms inside a ``lax.scan`` body or a
``lax.switch`` branch, while forward convolutions and dot products run at the same speed anywhere. The
stage-1 program (a scan over steps) and the universal decoder (scans and switches over slots) live inside
such bodies, so on CPU the VJP here computes

* the input gradient as a *forward* convolution of the output gradient with the flipped, transposed kernel;
* the kernel gradient as k dot products of the row-shifted input against the column-shifted output gradients
  (``_kernel_grad``),

which run at top-level speed everywhere (dots for the kernel gradient were already faster than XLA's top-level
kernel gradient: 10 ms vs 18 ms above, as one dot per tap). Other platforms, and convolutions that are strided or
change the spatial size, use XLA's convolution and its own gradient. ``fdn.models.depthwise.set_default_impl`` /
``$FDN_DEPTHWISE_IMPL`` pick for both kernels: ``'xla'`` (what export uses: no platform-dependent code in the
traced program), ``'shifted'`` (the CPU kernels everywhere) or ``'auto'`` (per platform, at trace time inside
``fdn.models.depthwise.tracing_for``, else when XLA lowers).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from fdn.models import depthwise

_DIMS = ("NHWC", "HWIO", "NHWC")


def _xla(x, kernel, padding: int, dilation: int):
    return lax.conv_general_dilated(
        x, kernel, (1, 1), [(padding, padding)] * 2, rhs_dilation=(dilation, dilation), dimension_numbers=_DIMS
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _same_conv(x, kernel, padding: int, dilation: int):
    return _xla(x, kernel, padding, dilation)


def _same_conv_fwd(x, kernel, padding, dilation):
    return _xla(x, kernel, padding, dilation), (x, kernel)


def _shift(x, offset: int, axis: int):
    """``x`` moved along ``axis`` so that ``out[.., r, ..] = x[.., r + offset, ..]``, zero where that is outside:
    one ``lax.pad`` with a negative side (XLA reads it as a crop), no copy at all for offset 0."""
    if offset == 0:
        return x
    if abs(offset) >= x.shape[axis]:
        return jnp.zeros_like(x)
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (-offset, offset, 0)
    return lax.pad(x, jnp.zeros((), x.dtype), config)


# `_kernel_grad` batches its dots over images from maps this large: the batched dot runs on every core but writes
# a (c, k*o) partial per image, which costs more than it saves where the contraction per image is short (the
# 1x1 convolutions of the demo teacher's encoder on 2x2..16x16 maps: its training step 61 -> 102 ms when batched).
_PER_IMAGE_DOT_PIXELS = 1024


def _kernel_grad(x, g, k: int, padding: int, dilation: int):
    """dL/dkernel[i, j] = sum over images and pixels of x[r + a_i, q + b_j] * g[r, q] (a_i = i*d - p, b_j = j*d - p;
    x is zero outside), computed as k dot products, one per row tap i: the input shifted by a_i rows
    against the k column shifts of the output gradient side by side (``g`` moved right by b_j, which lines
    g[r, q - b_j] up with x[r + a_i, q]), contracting over images' pixels.

    Why this form (measured on the 2-core CPU inside a ``lax.scan``, batch 16, 64x64, 48 -> 48, dilation 1/3/12):
    the only copies are k - 1 shifted inputs and one k-wide gradient (the centre row needs none), and the
    contraction runs over the image's own pixels, not a padded canvas: 16/15/16 ms, against 17/21/25 ms with the
    input padded and flattened at the padded width, and 26/29/49 ms for the earlier form (nine shifted gradients
    concatenated, one dot; XLA also made each copy twice, pad then concatenation). On maps of at least
    `_PER_IMAGE_DOT_PIXELS` the dots are batched over images and summed after: XLA:CPU runs a dot with a long
    contraction and a small (c, k*o) output on one thread, a batched one on every core (1.5x). Row taps that read
    only zero padding (dilated convs on small maps) are skipped."""
    n, h, w, c = x.shape
    o = g.shape[-1]
    acc = jnp.promote_types(x.dtype, jnp.float32)
    g_cols = jnp.concatenate([_shift(g, padding - j * dilation, 2) for j in range(k)], axis=-1)
    g_cols = g_cols.reshape(n, h * w, k * o)
    rows = []
    for i in range(k):
        offset = i * dilation - padding
        if abs(offset) >= h:
            rows.append(jnp.zeros((c, k * o), acc))
            continue
        window = _shift(x, offset, 1).reshape(n, h * w, c)
        if h * w >= _PER_IMAGE_DOT_PIXELS:
            rows.append(jnp.einsum("npc,npt->nct", window, g_cols, preferred_element_type=acc).sum(0))
        else:
            rows.append(jnp.einsum("npc,npt->ct", window, g_cols, preferred_element_type=acc))
    return jnp.stack(rows).reshape(k, c, k, o).transpose(0, 2, 1, 3)


def _same_conv_bwd(padding, dilation, res, g):
    x, kernel = res
    k = kernel.shape[0]
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    g_x = _xla(g, flipped.astype(g.dtype), dilation * (k - 1) - padding, dilation)
    return g_x.astype(x.dtype), _kernel_grad(x, g, k, padding, dilation).astype(kernel.dtype)


_same_conv.defvjp(_same_conv_fwd, _same_conv_bwd)


def conv2d(x, kernel, stride: int = 1, padding: int = 0, dilation: int = 1):
    """NHWC x HWIO convolution with PyTorch's symmetric integer padding (no groups, no bias)."""
    k = kernel.shape[0]
    same = stride == 1 and kernel.shape[0] == kernel.shape[1] and 2 * padding == dilation * (k - 1)
    if not same:
        return lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            [(padding, padding)] * 2,
            rhs_dilation=(dilation, dilation),
            dimension_numbers=_DIMS,
        )
    impl = depthwise.resolve_impl("auto")  # one switch for fdn's CPU kernels (export sets 'xla'; `tracing_for`)
    if impl == "xla":
        return _xla(x, kernel, padding, dilation)
    if impl == "shifted":
        return _same_conv(x, kernel, padding, dilation)
    return lax.platform_dependent(
        x,
        kernel,
        cpu=lambda a, b: _same_conv(a, b, padding, dilation),
        default=lambda a, b: _xla(a, b, padding, dilation),
    )

"""Dense stride-1 convolution whose gradient stays fast inside loops and branches on XLA:CPU.

Measured on the 2-core CI CPU (batch 32, 16x16x48, 3x3 conv): XLA's own convolution gradients take 18 ms
(kernel) and 5 ms (input) at the top level of a program but 420 ms and 96 ms inside a ``lax.scan`` body or a
``lax.switch`` branch, while forward convolutions and dot products run at the same speed anywhere. The
stage-1 program (a scan over steps) and the universal decoder (scans and switches over slots) live inside
such bodies, so on CPU the VJP here computes

* the input gradient as a *forward* convolution of the output gradient with the flipped, transposed kernel;
* the kernel gradient as k batched dot products of the input's row windows against the column-shifted output
  gradients (``_kernel_grad``),

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


def _kernel_grad(x, g, k: int, padding: int, dilation: int):
    """dL/dkernel: for row tap i, the padded input's rows [i*d, i*d + h), flattened at the padded width wp,
    dotted against the output gradient's k column shifts side by side.

    With rows flattened at width wp, tap (i, j) of output pixel (r, q) reads padded input (r + i*d, q + j*d); the
    output gradient padded to width wp by j*d zero columns on the left (and the rest on the right) lines up with
    the row window, and its zero columns cancel the terms that would wrap into the next row. So each row tap is one
    contraction over (row, column) of a (h*wp, c) window against a (h*wp, k*o) matrix, giving the k taps of that
    row at once; the k windows and the one shifted gradient are the only copies (3c + 3o channels for a 3x3,
    instead of 9 shifted copies). Measured on the 2-core CPU inside a ``lax.scan`` (batch 16, 64x64, 48 -> 48),
    why it is written so:

    * the dots are batched over images (``npc,npt->nct``, then a sum): XLA:CPU runs one dot with a long
      contraction and a small (c, k*o) output on one thread, a batched one on every core (1.5x);
    * k row windows + one k-wide gradient instead of k*k shifted copies: 18-27 ms against 26-49 ms (dilation
      1/3/12) for the previous form (nine shifted gradients concatenated, one dot), whose copies XLA also made
      twice (each pad, then the concatenation); 4-D window slices per tap (no flattening) took 28-31 ms.
    """
    n, h, w, c = x.shape
    o = g.shape[-1]
    wp = w + 2 * padding
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    shifts = [jnp.pad(g, ((0, 0), (0, 0), (j * dilation, wp - w - j * dilation), (0, 0))) for j in range(k)]
    g_cols = jnp.concatenate(shifts, axis=-1).reshape(n, h * wp, k * o)
    acc = jnp.promote_types(x.dtype, jnp.float32)
    rows = [
        jnp.einsum(
            "npc,npt->nct",
            xp[:, i * dilation : i * dilation + h].reshape(n, h * wp, c),
            g_cols,
            preferred_element_type=acc,
        )
        for i in range(k)
    ]
    return jnp.stack(rows).sum(1).reshape(k, c, k, o).transpose(0, 2, 1, 3)


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

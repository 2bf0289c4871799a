"""Dense stride-1 convolution whose gradient stays fast inside loops and branches on XLA:CPU.

Measured on the 2-core CI CPU (batch 32, 16x16x48, 3x3 conv): XLA's own convolution gradients take 18 ms
(kernel) and 5 ms (input) at the top level of a program but 420 ms and 96 ms inside a ``lax.scan`` body or a
``lax.switch`` branch, while forward convolutions and dot products run at the same speed anywhere. The
stage-1 program (a scan over steps) and the universal decoder (scans and switches over slots) live inside
such bodies, so on CPU the VJP here computes

* the input gradient as a *forward* convolution of the output gradient with the flipped, transposed kernel;
* the kernel gradient as one dot product of the input against the tap-shifted output gradients
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


def _kernel_grad(x, g, k: int, padding: int, dilation: int):
    """dL/dkernel as ONE dot product: the padded input, rows flattened, against the nine (k*k) tap-shifted copies
    of the output gradient side by side.

    With rows flattened at the padded width ``wp``, tap (i, j) of output position p reads input position
    p + (i*wp + j)*dilation; the output gradient, padded to width wp with zero columns (which cancel the terms
    that would wrap into the next row) and shifted by that offset, lines up with the input, so every tap is
    a plain contraction over (n, position). Why not one dot per tap on slices of the input (the previous form):
    the nine input slices are copies as large as the input, and nine small dots use the cores worse than
    one wide one; this form was 1.5-2x faster inside a ``lax.scan`` on the 2-core CPU (batch 16, 64x64x48,
    rates 1/3/12). Shifting the gradient rather than the input also copies ``o`` channels instead of ``c``
    (21 instead of 48 for the classifier)."""
    n, h, w, c = x.shape
    o = g.shape[-1]
    wp = w + 2 * padding
    reach = (k - 1) * dilation  # the last tap's extra columns past the padded image
    xf = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0))).reshape(n, -1, c)
    xf = jnp.pad(xf, ((0, 0), (0, reach), (0, 0)))
    gf = jnp.pad(g, ((0, 0), (0, 0), (0, wp - w), (0, 0))).reshape(n, h * wp, o)
    length = xf.shape[1]
    offsets = [(i * wp + j) * dilation for i in range(k) for j in range(k)]
    shifted = jnp.concatenate([jnp.pad(gf, ((0, 0), (s, length - h * wp - s), (0, 0))) for s in offsets], axis=-1)
    out = jnp.einsum("npc,npt->ct", xf, shifted, preferred_element_type=jnp.promote_types(x.dtype, jnp.float32))
    return out.reshape(c, k, k, o).transpose(1, 2, 0, 3)


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

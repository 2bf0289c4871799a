"""Dense stride-1 convolution whose gradient stays fast inside loops and branches on XLA:CPU.

Measured on the 2-core CI CPU (batch 32, 16x16x48, 3x3 conv): XLA's own convolution gradients take 18 ms
(kernel) and 5 ms (input) at the top level of a program but 420 ms and 96 ms inside a ``lax.scan`` body or a
``lax.switch`` branch, while forward convolutions and dot products run at the same speed anywhere. The
stage-1 program (a scan over steps) and the universal decoder (scans and switches over slots) live inside
such bodies, so on CPU the VJP here computes

* the input gradient as a *forward* convolution of the output gradient with the flipped, transposed kernel;
* the kernel gradient as one dot product per kernel tap (im2col without materialising the columns),

which run at top-level speed everywhere (the tap dots are even faster than XLA's top-level kernel gradient:
10 ms vs 18 ms above). Other platforms, and convolutions that are strided or change the spatial size, use
XLA's convolution and its own gradient. ``fdn.models.depthwise.set_default_impl`` / ``$FDN_DEPTHWISE_IMPL`` pick
for both kernels: ``'xla'`` (what export uses: no platform-dependent code in the traced program),
``'shifted'`` (the CPU kernels everywhere) or ``'auto'``.
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


def _same_conv_bwd(padding, dilation, res, g):
    x, kernel = res
    k = kernel.shape[0]
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    g_x = _xla(g, flipped.astype(g.dtype), dilation * (k - 1) - padding, dilation)
    h, w = g.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    taps = [
        [
            jnp.einsum(
                "nhwc,nhwo->co",
                xp[:, i * dilation : i * dilation + h, j * dilation : j * dilation + w],
                g,
                preferred_element_type=jnp.promote_types(x.dtype, jnp.float32),
            )
            for j in range(k)
        ]
        for i in range(k)
    ]
    g_k = jnp.stack([jnp.stack(row) for row in taps]).astype(kernel.dtype)
    return g_x.astype(x.dtype), g_k


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
    impl = depthwise.default_impl()  # one process-wide switch for fdn's CPU kernels (export sets 'xla')
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

"""Building blocks with PyTorch's numerics: explicit-padding convolutions and BatchNorm.

fdn must compute what the official PyTorch models compute (parity tests against ``../shared/parity``), so:
* convolutions take PyTorch's symmetric integer padding (not 'SAME'), which decides how odd sizes round at
  stride 2;
* BatchNorm uses momentum 0.1 in PyTorch's sense and updates the running variance with the *unbiased* batch
  variance while normalising with the biased one (Flax's BatchNorm uses the biased one for both; it matters for
  the GAP op's BN, which sees one value per channel and image);
* depthwise convolutions go through ``fdn.models.depthwise`` (fast on XLA:CPU, cuDNN elsewhere), dense ones through
  ``fdn.models.conv`` (gradients that stay fast inside scans and switches on XLA:CPU).

Parameter names follow Flax (``kernel`` HWIO, ``scale``/``bias``, batch stats ``mean``/``var``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from fdn.models import names
from fdn.models.conv import conv2d

try:  # the fast depthwise kernel; plain XLA grouped conv until it is available
    from fdn.models.depthwise import depthwise_conv as _depthwise_conv
except ImportError:  # pragma: no cover
    _depthwise_conv = None

_DIMS = ("NHWC", "HWIO", "NHWC")

# PyTorch's BatchNorm2d defaults (momentum in PyTorch's sense: the weight of the new batch). Every BatchNorm
# of fdn, the universal decoder's masked one included, reads these.
BN_MOMENTUM = 0.1
BN_EPSILON = 1e-5


def torch_default_kernel_init(key, shape, dtype=jnp.float32):
    """PyTorch's default conv init (kaiming uniform, a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in = shape[0] * shape[1] * shape[2]
    bound = 1.0 / jnp.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class Conv(nn.Module):
    """Dense 2-D convolution, NHWC, PyTorch padding/stride/dilation semantics, optional bias."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    use_bias: bool = False

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param(names.KERNEL, torch_default_kernel_init, (k, k, x.shape[-1], self.features))
        y = conv2d(x, kernel.astype(x.dtype), self.stride, self.padding, self.dilation)
        if self.use_bias:
            fan_in = k * k * x.shape[-1]
            bias = self.param(
                names.BIAS,
                lambda key, s: jax.random.uniform(key, s, jnp.float32, -1, 1) / jnp.sqrt(fan_in),
                (self.features,),
            )
            y = y + bias.astype(y.dtype)
        return y


def depthwise(x, kernel, stride: int, padding: int, dilation: int):
    """Depthwise conv of NHWC ``x`` with a (kh, kw, 1, C) kernel."""
    if _depthwise_conv is not None:
        return _depthwise_conv(x, kernel, stride=stride, dilation=dilation, padding=padding)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        [(padding, padding)] * 2,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=_DIMS,
        feature_group_count=x.shape[-1],
    )


class DepthwiseConv(nn.Module):
    """Depthwise (groups = channels) convolution without bias; kernel stored as (kh, kw, 1, C)."""

    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param(names.KERNEL, torch_default_kernel_init, (k, k, 1, x.shape[-1]))
        return depthwise(x, kernel.astype(x.dtype), self.stride, self.padding, self.dilation)


class BatchNorm(nn.Module):
    """BatchNorm2d with PyTorch semantics (momentum 0.1, eps 1e-5, unbiased running variance).

    ``train=True`` normalises with batch statistics and updates the running ones (call with
    ``mutable=['batch_stats']``); ``train=False`` uses the running statistics. Statistics are computed in
    at least float32 whatever the activation dtype.
    """

    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        scale = self.param(names.SCALE, nn.initializers.ones, (c,))
        bias = self.param(names.BIAS, nn.initializers.zeros, (c,))
        ra_mean = self.variable(names.BATCH_STATS, names.MEAN, lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable(names.BATCH_STATS, names.VAR, lambda: jnp.ones((c,), jnp.float32))
        if train:
            xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(xf, axes)
            var = jnp.mean(jnp.square(xf - mean), axes)
            if not self.is_initializing():
                ra_mean.value = running_average(ra_mean.value, mean, self.momentum)
                ra_var.value = running_average(ra_var.value, unbiased_variance(var, x.size // c), self.momentum)
        else:
            mean, var = ra_mean.value, ra_var.value
        mul, shift = normalizer(mean, var, scale, bias, self.epsilon)
        return x * mul.astype(x.dtype) + shift.astype(x.dtype)


def unbiased_variance(var, n):
    """The running variance's input: the biased batch variance ``var`` over ``n`` values (a Python int, or
    traced where the count is data, as in the universal decoder's masked statistics), made unbiased."""
    correction = n / max(n - 1, 1) if isinstance(n, int) else n / jnp.maximum(n - 1, 1)
    return var * correction


def normalizer(mean, var, scale, bias, epsilon: float = BN_EPSILON):
    """``(mul, shift)`` with ``x * mul + shift`` = BatchNorm of ``x`` under statistics ``mean``, ``var``."""
    mul = scale * jax.lax.rsqrt(var + epsilon)
    return mul, bias - mean * mul


def running_average(running, batch, momentum: float = BN_MOMENTUM):
    """A BatchNorm running statistic after one batch (no gradient flows into it)."""
    return (1 - momentum) * running + momentum * jax.lax.stop_gradient(batch)


class ConvBN(nn.Module):
    """Conv (no bias) -> BN -> optional ReLU/ReLU6: the unit most of the search space is made of."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    activation: str | None = "relu"  # 'relu', 'relu6' or None

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv(self.features, self.kernel_size, self.stride, self.padding, self.dilation, name=names.CONV)(x)
        x = BatchNorm(name=names.BN)(x, train)
        return activate(x, self.activation)


def activate(x, activation: str | None):
    if activation is None:
        return x
    if activation == "relu":
        return jax.nn.relu(x)
    if activation == "relu6":
        return jnp.clip(x, 0, 6)
    raise ValueError(f"unknown activation {activation!r}")

"""fdn.models.depthwise must equal lax's grouped conv in value and in both gradients, for every conv of the project.

Why so many shapes: the shifted implementation plans taps and padding per spatial dim at trace time (tap
skipping, cropping, stride-2 zero interleaving in the input grad), and each of those has its own edge:
odd sizes at stride 2, maps smaller than the dilated kernel, 1x1 maps, batch 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fdn.models import depthwise
from fdn.models.depthwise import depthwise_conv

# (kernel, stride, dilation, padding): the encoder's and the decoder's depthwise convs.
PROJECT_CASES = [(3, 1, 1, 1), (3, 2, 1, 1), (5, 1, 1, 2), (3, 1, 3, 3), (5, 1, 6, 12)]
SHAPES = [(2, 33, 44), (1, 17, 22), (2, 4, 5), (1, 1, 1)]
C = 6


def _reference(x, kernel, stride, dilation, padding):
    return lax.conv_general_dilated(
        x,
        kernel[:, :, None, :],
        (stride, stride),
        [(padding, padding)] * 2,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[3],
        precision=lax.Precision.HIGHEST,
    )


def _inputs(shape, k, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape + (C,)), dtype)
    kernel = jnp.asarray(rng.standard_normal((k, k, C)), dtype)
    return x, kernel


def _value_and_grads(fn, x, kernel, cotangent):
    """Under jit: eagerly, every slice of the shifted sums would be compiled on its own (slow tests)."""

    def run(x, kernel, cotangent):
        y, vjp = jax.vjp(fn, x, kernel)
        return (y,) + vjp(cotangent)

    return jax.jit(run)(x, kernel, cotangent)


def _assert_close(got, want, rtol=2e-5):
    for a, b in zip(got, want):
        assert a.shape == b.shape
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=rtol * scale)


EXTRA_CASES = [(3, 2, 1, 0), (5, 2, 2, 1), (3, 1, 2, 0)]
GRID = [(shape,) + case for shape in SHAPES for case in PROJECT_CASES] + [
    (shape,) + case for shape in SHAPES[:2] for case in EXTRA_CASES
]


@pytest.mark.parametrize("shape,k,stride,dilation,padding", GRID)
def test_matches_lax_value_and_grads(shape, k, stride, dilation, padding):
    h, w = shape[1:]
    if min(h, w) + 2 * padding < dilation * (k - 1) + 1:
        pytest.skip("empty output")
    x, kernel = _inputs(shape, k)
    want_y = _reference(x, kernel, stride, dilation, padding)
    cot = jnp.asarray(np.random.default_rng(1).standard_normal(want_y.shape), jnp.float32)
    want = _value_and_grads(lambda a, b: _reference(a, b, stride, dilation, padding), x, kernel, cot)
    for impl in ("shifted", "xla"):
        got = _value_and_grads(
            lambda a, b: depthwise_conv(a, b, stride=stride, dilation=dilation, padding=padding, impl=impl),
            x,
            kernel,
            cot,
        )
        _assert_close(got, want)


def test_auto_matches_lax():
    x, kernel = _inputs((2, 9, 7), 3)
    cot = jnp.ones((2, 5, 4, C), jnp.float32)
    want = _value_and_grads(lambda a, b: _reference(a, b, 2, 1, 1), x, kernel, cot)
    got = _value_and_grads(lambda a, b: depthwise_conv(a, b, stride=2, padding=1), x, kernel, cot)
    _assert_close(got, want)


def test_output_size_is_pytorchs_at_stride_2_on_odd_sizes():
    x, kernel = _inputs((1, 33, 17), 3)
    assert depthwise_conv(x, kernel, stride=2, padding=1, impl="shifted").shape == (1, 17, 9, C)


def test_accepts_hwio_kernel_and_asymmetric_padding():
    x, kernel = _inputs((2, 9, 10), 3)
    pads = ((0, 2), (1, 0))
    want = lax.conv_general_dilated(
        x,
        kernel[:, :, None, :],
        (1, 1),
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=C,
        precision=lax.Precision.HIGHEST,
    )
    got = depthwise_conv(x, kernel[:, :, None, :], padding=pads, impl="shifted")
    _assert_close([got], [want])


def test_skips_taps_that_only_read_padding():
    """5x5 dilation 6 padding 12 on a 4x5 map: only the centre tap touches data; the rest must be pruned."""
    x, kernel = _inputs((1, 4, 5), 5)
    jaxpr = jax.make_jaxpr(lambda a, b: depthwise_conv(a, b, dilation=6, padding=12, impl="shifted"))(x, kernel)
    assert str(jaxpr).count("mul") <= 2
    _, kernel_grad = jax.grad(
        lambda a, b: depthwise_conv(a, b, dilation=6, padding=12, impl="shifted").sum(), argnums=(0, 1)
    )(x, kernel)
    assert np.count_nonzero(np.asarray(kernel_grad).reshape(25, C).any(axis=1)) == 1


def test_jit_vmap_remat_and_second_order():
    x, kernel = _inputs((2, 11, 13), 3)

    def loss(impl, a, b):
        return jnp.sum(jnp.tanh(depthwise_conv(a, b, stride=2, padding=1, impl=impl)) ** 2)

    def per_example(impl):
        grad = jax.grad(jax.checkpoint(lambda a, b: loss(impl, a[None], b)), argnums=(0, 1))
        return jax.jit(jax.vmap(grad, in_axes=(0, None)))(x, kernel)

    _assert_close(per_example("shifted"), per_example("xla"))

    def hessian_vector(impl):
        grad_x = jax.grad(lambda a: loss(impl, a, kernel))
        return jax.jit(jax.grad(lambda a: jnp.vdot(grad_x(a), x)))(x)

    _assert_close([hessian_vector("shifted")], [hessian_vector("xla")], rtol=1e-4)


def test_vmap_over_kernels():
    x, kernel = _inputs((1, 7, 7), 3)
    kernels = jnp.stack([kernel, 2 * kernel])
    got = jax.vmap(lambda b: depthwise_conv(x, b, padding=1, impl="shifted"))(kernels)
    want = jax.vmap(lambda b: _reference(x, b, 1, 1, 1))(kernels)
    _assert_close([got], [want])


def test_bfloat16():
    x, kernel = _inputs((2, 12, 12), 3, dtype=jnp.bfloat16)
    got = jax.jit(lambda a, b: depthwise_conv(a, b, padding=1, impl="shifted"))(x, kernel)
    assert got.dtype == jnp.bfloat16 and kernel.dtype == jnp.bfloat16
    want = _reference(x.astype(jnp.float32), kernel.astype(jnp.float32), 1, 1, 1)
    _assert_close([got], [want], rtol=2e-2)
    grads = jax.jit(
        jax.grad(lambda a, b: depthwise_conv(a, b, padding=1, impl="shifted").astype(jnp.float32).sum(), argnums=(0, 1))
    )(x, kernel)
    assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.bfloat16]


def test_default_impl_override(monkeypatch):
    monkeypatch.setattr(depthwise, "_default_impl", None)
    monkeypatch.setenv("FDN_DEPTHWISE_IMPL", "xla")
    assert depthwise.default_impl() == "xla"
    depthwise.set_default_impl("shifted")
    assert depthwise.default_impl() == "shifted"
    depthwise.set_default_impl(None)
    assert depthwise.default_impl() == "xla"
    with pytest.raises(ValueError):
        depthwise.set_default_impl("fast")


def test_rejects_bad_shapes():
    x, kernel = _inputs((1, 4, 4), 3)
    with pytest.raises(ValueError):
        depthwise_conv(x, kernel[:, :, :2])
    with pytest.raises(ValueError):
        depthwise_conv(x, kernel, dilation=3)  # 7-wide dilated kernel, no padding, 4-wide map


def test_impl_on_names_what_auto_gives_per_platform(monkeypatch):
    monkeypatch.delenv("FDN_DEPTHWISE_IMPL", raising=False)
    assert (depthwise.impl_on("cpu"), depthwise.impl_on("gpu")) == ("shifted", "xla")
    monkeypatch.setenv("FDN_DEPTHWISE_IMPL", "shifted")
    assert depthwise.impl_on("gpu") == "shifted"

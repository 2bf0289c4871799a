"""The hand-written convolution gradients equal ``jax.grad`` of ``lax.conv_general_dilated``, wherever they run.

Why: on XLA:CPU fdn differentiates its same-size dense convs (``fdn.models.conv``) and its depthwise convs
(``fdn.models.depthwise``, impl ``shifted``) with its own VJPs, because XLA's convolution gradients are 20x
slower inside a ``lax.scan`` body or a ``lax.switch`` branch, which is exactly where the stage-1 program and the
universal decoder run them. A wrong VJP there would not crash: it would train every candidate of the search
on wrong gradients. So each conv geometry the model uses is checked at the top level, inside ``lax.scan``
and inside ``lax.switch``, for the forced CPU kernels (``shifted``) and for ``auto`` (which picks them on
CPU through ``lax.platform_dependent``). ``tests/test_depthwise.py`` covers the depthwise kernels at the top
level on many shapes; the loop and branch contexts are added here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fdn.models import conv as conv_lib
from fdn.models import depthwise
from fdn.models.conv import conv2d
from fdn.models.depthwise import depthwise_conv

# (kernel, stride, padding, dilation) of every dense conv of the model: 1x1 (adapters, projections, GAP op,
# merge), 3x3 (op 1, classifiers), 3x3 dilated 3 and 12 (ops 5, 6), 3x3 stride 2 (the encoder's stem); and
# dilation 14, whose outer row taps read only padding on SHAPE (the kernel gradient skips them).
DENSE_CASES = [(1, 1, 0, 1), (3, 1, 1, 1), (3, 1, 3, 3), (3, 1, 12, 12), (3, 1, 14, 14), (3, 2, 1, 1)]
# (kernel, stride, padding, dilation) of every depthwise conv: encoder 3x3 stride 1/2, ops 2, 3, 7, 8.
DEPTHWISE_CASES = [(3, 1, 1, 1), (3, 2, 1, 1), (5, 1, 2, 1), (3, 1, 3, 3), (5, 1, 12, 6)]
SHAPE = (2, 13, 15)  # odd sizes; smaller than the dilation-12 kernel's reach, so some taps read only padding
C_IN, C_OUT = 4, 5
CONTEXTS = ["top", "scan", "switch"]
RTOL = 2e-5  # float32, relative to the largest entry; a wrong gradient is off by O(1)


def _dense_reference(x, kernel, stride, padding, dilation):
    return lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        [(padding, padding)] * 2,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )


def _depthwise_reference(x, kernel, stride, padding, dilation):
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


def _in_context(conv, context):
    """``f(x, kernels, index) -> outputs`` with ``conv`` applied at the top level, in a scan body over the
    stacked kernels, or in a switch branch chosen by a traced index (both branches are compiled)."""
    if context == "top":
        return lambda x, kernels, index: jnp.stack([conv(x, k) for k in kernels])
    if context == "scan":
        return lambda x, kernels, index: lax.scan(lambda c, k: (c, conv(x, k)), None, kernels)[1]

    def switched(x, kernels, index):
        branches = [lambda a, k: conv(a, k), lambda a, k: -conv(a, k)]
        return jnp.stack([lax.switch(index, branches, x, k) for k in kernels])

    return switched


def _value_and_grads(fn, x, kernels, cotangent):
    def run(x, kernels, cotangent, index):
        y, vjp = jax.vjp(lambda a, b: fn(a, b, index), x, kernels)
        return (y,) + vjp(cotangent)

    return jax.jit(run)(x, kernels, cotangent, jnp.int32(0))


def _inputs(kernel_shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(SHAPE + (C_IN,)), jnp.float32)
    kernels = jnp.asarray(rng.standard_normal((2,) + kernel_shape), jnp.float32)
    return x, kernels


def _check(conv, reference, x, kernels, context):
    want_fn, got_fn = _in_context(reference, context), _in_context(conv, context)
    out = jax.eval_shape(want_fn, x, kernels, jnp.int32(0))
    cot = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape), jnp.float32)
    want = _value_and_grads(want_fn, x, kernels, cot)
    got = _value_and_grads(got_fn, x, kernels, cot)
    for name, a, b in zip(("value", "d_input", "d_kernel"), got, want):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, atol=RTOL * float(jnp.max(jnp.abs(b))), err_msg=f"{context}: {name}")


def _uses_custom_vjp(fn, *args) -> bool:
    return "custom_vjp" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.parametrize("impl", ["shifted", "auto"])
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("k,stride,padding,dilation", DENSE_CASES)
def test_dense_conv_grads_match_lax(k, stride, padding, dilation, context, impl, monkeypatch):
    monkeypatch.setattr(depthwise, "_default_impl", impl)  # the process-wide switch conv2d reads at trace time
    x, kernels = _inputs((k, k, C_IN, C_OUT))
    conv = lambda a, w: conv2d(a, w, stride, padding, dilation)
    if stride == 1:  # same-size convs take the hand-written VJP (under 'auto' on CPU, through platform_dependent)
        assert jax.default_backend() != "cpu" or _uses_custom_vjp(conv, x, kernels[0])
    _check(conv, lambda a, w: _dense_reference(a, w, stride, padding, dilation), x, kernels, context)


@pytest.mark.parametrize("padding_dilation", [1, 12])
def test_dense_conv_kernel_grad_batched_over_images_on_large_maps(padding_dilation, monkeypatch):
    """From `conv._PER_IMAGE_DOT_PIXELS` pixels the kernel gradient's dots are batched over images (SHAPE's maps
    are below it): the same gradients as XLA's, in a scan body."""
    monkeypatch.setattr(depthwise, "_default_impl", "shifted")
    side = int(np.ceil(np.sqrt(conv_lib._PER_IMAGE_DOT_PIXELS)))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, side, side + 1, C_IN)), jnp.float32)
    kernels = jnp.asarray(np.random.default_rng(3).standard_normal((2, 3, 3, C_IN, C_OUT)), jnp.float32)
    p = padding_dilation
    conv = lambda a, w: conv2d(a, w, 1, p, p)
    assert _uses_custom_vjp(conv, x, kernels[0])
    _check(conv, lambda a, w: _dense_reference(a, w, 1, p, p), x, kernels, "scan")


@pytest.mark.parametrize("context", ["scan", "switch"])  # the top level: tests/test_depthwise.py
@pytest.mark.parametrize("k,stride,padding,dilation", DEPTHWISE_CASES)
def test_depthwise_grads_match_lax_in_loops_and_branches(k, stride, padding, dilation, context):
    x, kernels = _inputs((k, k, C_IN))

    def conv(a, w):
        return depthwise_conv(a, w, stride=stride, dilation=dilation, padding=padding, impl="shifted")

    assert _uses_custom_vjp(conv, x, kernels[0])
    _check(conv, lambda a, w: _depthwise_reference(a, w, stride, padding, dilation), x, kernels, context)


def test_dense_conv_export_path_is_plain_xla(monkeypatch):
    """impl 'xla' (what export sets) traces no custom VJP, and still gives the same gradients."""
    monkeypatch.setattr(depthwise, "_default_impl", "xla")
    x, kernels = _inputs((3, 3, C_IN, C_OUT))
    conv = lambda a, w: conv2d(a, w, 1, 1, 1)
    assert not _uses_custom_vjp(conv, x, kernels[0])
    _check(conv, lambda a, w: _dense_reference(a, w, 1, 1, 1), x, kernels, "scan")


@pytest.mark.parametrize("op", ["dense", "depthwise"])
def test_tracing_for_a_platform_traces_one_form_with_the_same_result(op):
    """``depthwise.tracing_for(platform)``: 'auto' is resolved at trace time (one form in the program, not both
    branches of ``lax.platform_dependent``): the CPU kernels for 'cpu', XLA's convolution elsewhere."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)
    shape = (3, 3, 4, 5) if op == "dense" else (3, 3, 4)
    kernel = jnp.asarray(rng.normal(size=shape), jnp.float32)

    def grads():  # a new function per trace: JAX reuses traces of the same function object
        f = (lambda a, b: conv2d(a, b, padding=1)) if op == "dense" else (lambda a, b: depthwise_conv(a, b, padding=1))
        return jax.grad(lambda a, b: jnp.sum(f(a, b) ** 2), argnums=(0, 1))

    depthwise.set_default_impl(None)
    both = str(jax.make_jaxpr(grads())(x, kernel))
    with depthwise.tracing_for("cpu"):
        cpu = str(jax.make_jaxpr(grads())(x, kernel))
        on_cpu = jax.jit(grads())(x, kernel)
    with depthwise.tracing_for("gpu"):
        gpu = str(jax.make_jaxpr(grads())(x, kernel))
    assert "platform_index" in both
    assert "platform_index" not in cpu and "platform_index" not in gpu
    assert "conv_general_dilated" in gpu and ("conv_general_dilated" in cpu) == (op == "dense")  # dense: fwd form
    if op == "dense":  # the CPU kernel gradient is a dot (`conv._kernel_grad`), XLA's a convolution
        assert "dot_general" in cpu and "dot_general" not in gpu
    for got, want in zip(on_cpu, jax.jit(grads())(x, kernel)):
        np.testing.assert_array_equal(got, want)

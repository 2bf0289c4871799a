"""Depthwise 2-D convolution that is fast on XLA:CPU as well as on GPU.

Why this exists: XLA:CPU lowers ``lax.conv_general_dilated(..., feature_group_count=C)`` to a slow generic
loop, about 30x slower than PyTorch's oneDNN kernels (see ``shared/reference/perf-notes.md``), and the
MobileNet-v2 encoder and most decoder ops of the search space are depthwise.  A depthwise conv is just
``sum_{i,j} w[i, j, c] * x[n, s*h + d*i - p, s*w + d*j - p, c]``: k*k shifted, per-channel multiplies that
XLA fuses into one memory-bound loop.  Autodiff of that sum is slow again (its transpose is k*k pads plus
k*k separate reductions), so the ``"shifted"`` implementation carries a ``jax.custom_vjp`` whose backward
is written in the same shifted-sum form:

* input grad: a depthwise *correlation* of the output grad, zero-interleaved by the stride and padded,
  with the spatially flipped kernel -- i.e. the same shifted-sum routine, run on the output grad;
* kernel grad: for every tap, a reduction over batch and space of (shifted input * output grad).

Taps that only ever read zero padding (common at coarse levels, e.g. a 5x5 dilation-6 conv with padding 12
on a 4x5 map) are dropped at trace time, and the padding is cropped to what the remaining taps read.

On GPU/TPU, XLA's own depthwise conv (cuDNN on NVIDIA) is good, so ``impl="auto"`` picks per platform; see
:func:`depthwise_conv`.
"""

import contextlib
import contextvars
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "shifted", "xla")
_ENV_VAR = "FDN_DEPTHWISE_IMPL"
_default_impl = None  # set by set_default_impl(); None means "read the env var, else auto"

IntPair = int | tuple[int, int]
Padding = int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]]


def set_default_impl(impl):
    """Overrides what ``impl="auto"`` resolves to, for the whole process (``None`` restores the default).

    Benchmarks and debugging use this (or the ``FDN_DEPTHWISE_IMPL`` env var) to compare implementations
    without touching model code. It is read at trace time, so already-jitted functions keep their choice.
    """
    global _default_impl
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None, got {impl!r}")
    _default_impl = impl


_TRACING_FOR = contextvars.ContextVar("fdn_tracing_for", default=None)


@contextlib.contextmanager
def tracing_for(platform: str | None):
    """Inside the block, ``impl="auto"`` (not overridden) resolves at trace time for ``platform`` ('cpu', 'gpu',
    ...): code that knows where its programs will run (the candidate trainer's programs, the search's teacher)
    traces and lowers one implementation instead of both branches of ``lax.platform_dependent`` (on the demo's
    teacher step: ~30% less tracing, ~10% less XLA compile time, the same program). ``None``: no change.
    JAX may reuse a trace of the same function made outside the block (or inside it, for another platform):
    every form computes the same values on every platform, so that only ever costs speed, never correctness."""
    token = _TRACING_FOR.set(platform)
    try:
        yield
    finally:
        _TRACING_FOR.reset(token)


def resolve_impl(impl: str) -> str:
    """``impl`` with ``"auto"`` resolved as far as known at trace time: the setter / ``$FDN_DEPTHWISE_IMPL``,
    then ``tracing_for``'s platform (shifted on CPU, xla elsewhere); still ``"auto"`` when neither says."""
    if impl == "auto":
        impl = default_impl()
    if impl == "auto" and (platform := _TRACING_FOR.get()) is not None:
        impl = "shifted" if platform == "cpu" else "xla"
    return impl


def default_impl():
    """The implementation ``impl="auto"`` stands for now: setter, else ``$FDN_DEPTHWISE_IMPL``, else auto."""
    if _default_impl is not None:
        return _default_impl
    env = os.environ.get(_ENV_VAR, "auto").strip().lower() or "auto"
    if env not in IMPLS:
        raise ValueError(f"${_ENV_VAR} must be one of {IMPLS}, got {env!r}")
    return env


def impl_on(platform: str) -> str:
    """What ``impl="auto"`` gives on ``platform`` now ('shifted' or 'xla'): for benchmarks to name the kernels
    they measured."""
    token = _TRACING_FOR.set(platform)
    try:
        return resolve_impl("auto")
    finally:
        _TRACING_FOR.reset(token)


def depthwise_conv(x, kernel, *, stride: IntPair = 1, dilation: IntPair = 1, padding: Padding = 0, impl: str = "auto"):
    """Depthwise 2-D convolution of an NHWC tensor, with PyTorch's explicit zero-padding semantics.

    Equals ``torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d, groups=C)`` (in NHWC) and
    ``lax.conv_general_dilated(..., feature_group_count=C)`` with the same explicit padding, in value and in
    gradients with respect to ``x`` and ``kernel``.

    Args:
      x: ``(N, H, W, C)``.
      kernel: ``(kh, kw, C)``, or flax's HWIO layout ``(kh, kw, 1, C)``.
      stride, dilation: an int or an ``(h, w)`` pair.
      padding: an int (symmetric, as in PyTorch), an ``(ph, pw)`` pair (symmetric per dim) or
        ``((lo_h, hi_h), (lo_w, hi_w))``. Output size is ``(H + lo + hi - d*(k-1) - 1) // s + 1``.
      impl: ``"shifted"`` (k*k shifted multiplies with a custom VJP in the same form; fast on XLA:CPU),
        ``"xla"`` (``lax.conv_general_dilated``; cuDNN on GPU) or ``"auto"``. ``"auto"`` first honours
        :func:`set_default_impl` / ``$FDN_DEPTHWISE_IMPL``; otherwise it is resolved when XLA lowers the
        computation for a concrete platform (``lax.platform_dependent``): shifted on CPU, xla elsewhere.
        So the choice follows the device the computation actually runs on, not ``jax.default_backend()``;
        inside :func:`tracing_for` it is made at trace time for the platform named there.

    Returns:
      ``(N, Ho, Wo, C)`` in the promoted dtype of ``x`` and ``kernel``.

    Note: the shifted implementation has a ``custom_vjp``, so forward-mode autodiff (``jax.jvp``,
    ``jacfwd``) is not available for it; use ``impl="xla"`` there. Reverse mode of any order, ``jit``,
    ``vmap`` and ``jax.checkpoint`` work.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    x, kernel, geom = _normalize(x, kernel, stride, dilation, padding)
    impl = resolve_impl(impl)
    if impl == "shifted":
        return _shifted(x, kernel, geom)
    if impl == "xla":
        return _xla(x, kernel, geom)
    return lax.platform_dependent(
        x, kernel, cpu=lambda x, k: _shifted(x, k, geom), default=lambda x, k: _xla(x, k, geom)
    )


# ----------------------------------------------------------------------------------------------------------
# Argument handling


def _pair(v, name) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return v


def _padding_pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * 2, (int(padding),) * 2
    padding = tuple(padding)
    if len(padding) != 2:
        raise ValueError(f"padding must be an int, (ph, pw) or ((lo, hi), (lo, hi)), got {padding!r}")
    return tuple((int(p), int(p)) if isinstance(p, (int, np.integer)) else _pair(p, "padding") for p in padding)


def _normalize(x, kernel, stride, dilation, padding):
    """Checks shapes, promotes dtypes and packs the static geometry into a hashable tuple."""
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC, got shape {x.shape}")
    if kernel.ndim == 4:
        if kernel.shape[2] != 1:
            raise ValueError(f"a 4-D depthwise kernel must be (kh, kw, 1, C), got {kernel.shape}")
        kernel = kernel[:, :, 0, :]
    if kernel.ndim != 3 or kernel.shape[2] != x.shape[3]:
        raise ValueError(f"kernel must be (kh, kw, C={x.shape[3]}) or (kh, kw, 1, C), got {kernel.shape}")
    dtype = jnp.result_type(x, kernel)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = _padding_pairs(padding)
    for dim, (n, k, s, d, (lo, hi)) in enumerate(zip(x.shape[1:3], kernel.shape[:2], stride, dilation, pads)):
        if s < 1 or d < 1:
            raise ValueError(f"stride and dilation must be >= 1, got {stride}, {dilation}")
        if (n + lo + hi - d * (k - 1) - 1) // s + 1 < 1:
            raise ValueError(
                f"empty output in spatial dim {dim}: size {n}, kernel {k}, dilation {d}, padding {(lo, hi)}"
            )
    return x, kernel, (stride, dilation, pads)


# ----------------------------------------------------------------------------------------------------------
# impl="xla"


def _xla(x, kernel, geom):
    stride, dilation, pads = geom
    return lax.conv_general_dilated(
        x,
        kernel[:, :, None, :],
        window_strides=stride,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[3],
    )


# ----------------------------------------------------------------------------------------------------------
# impl="shifted"


def _tap_plan(n, k, stride, dilation, lo, hi, interior=0):
    """Plans one spatial dim of a strided, dilated correlation over a padded (and interleaved) input.

    The input of size ``n`` is conceptually padded by ``lo``/``hi`` zeros (either may be negative, i.e. a
    crop) with ``interior`` zeros between elements, as ``lax.pad`` does. Returns ``(out, taps, pad)``:
    the output size, ``[(tap, start)]`` for the taps that read at least one real element (``start`` is
    where the tap's strided slice begins in the array padded with ``pad``), and the ``(lo, hi, interior)``
    pad config cropped to the rows those taps read, so no work is spent on all-zero taps or margins.
    """
    padded = lo + hi + n + max(n - 1, 0) * interior
    out = (padded - dilation * (k - 1) - 1) // stride + 1
    rows = np.arange(out) * stride
    real = np.zeros(padded, dtype=bool)
    real_rows = lo + np.arange(n) * (interior + 1)
    real[real_rows[(real_rows >= 0) & (real_rows < padded)]] = True
    taps = [i for i in range(k) if real[rows + i * dilation].any()]
    if not taps:
        return out, [], None
    first = taps[0] * dilation
    last = taps[-1] * dilation + (out - 1) * stride
    pad = (lo - first, hi - (padded - 1 - last), interior)
    return out, [(i, i * dilation - first) for i in taps], pad


def _correlate(x, kernel, stride, dilation, pad_config, out_dtype):
    """``sum_{i,j} kernel[i, j] * xpad[:, s*h + d*i, s*w + d*j]`` over the taps that touch real data.

    ``pad_config`` is ``lax.pad``'s per-spatial-dim ``(lo, hi, interior)``. Accumulates in at least
    float32, so bf16 inputs sum like XLA's conv does, and returns ``out_dtype``.
    """
    n, h, w, c = x.shape
    kh, kw, _ = kernel.shape
    (lo_h, hi_h, in_h), (lo_w, hi_w, in_w) = pad_config
    ho, taps_h, pad_h = _tap_plan(h, kh, stride[0], dilation[0], lo_h, hi_h, in_h)
    wo, taps_w, pad_w = _tap_plan(w, kw, stride[1], dilation[1], lo_w, hi_w, in_w)
    if not taps_h or not taps_w:
        return jnp.zeros((n, ho, wo, c), out_dtype)
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), pad_h, pad_w, (0, 0, 0)])
    kernel = kernel.astype(acc_dtype)
    acc = None
    for i, si in taps_h:
        for j, sj in taps_w:
            tap = lax.slice(
                xp,
                (0, si, sj, 0),
                (n, si + (ho - 1) * stride[0] + 1, sj + (wo - 1) * stride[1] + 1, c),
                (1, stride[0], stride[1], 1),
            )
            term = tap.astype(acc_dtype) * kernel[i, j]
            acc = term if acc is None else acc + term
    return acc.astype(out_dtype)


# Output rows of the kernel grad are summed in at most this many chunks inside one loop fusion before the
# final reduction; see _kernel_grad for why. 16 measured best on the 64x64 benchmark (8: +10%, 64: +2.5x).
_DK_MAX_CHUNKS = 16
# ... and in as few as keep the stacked partial sums below this many elements (or half of g): more chunks
# only cost compile time (taps * chunks slices) on small maps, where the partial array is cheap anyway.
_DK_PARTIAL_ELEMENTS = 1 << 16


def _kernel_grad(x, g, kshape, stride, dilation, pads):
    """``dk[i, j, c] = sum_{n,h,w} xpad[n, s*h + d*i, s*w + d*j, c] * g[n, h, w, c]``, per kept tap.

    Written the obvious way (one ``sum`` per tap), XLA:CPU hands each ``reduce(tap * g)`` to a YNNPACK
    fusion that first materialises the shifted tap as a full-size copy: ~160 ms for a 3x3 tap set on
    16x64x64x48, 30x the forward. Instead the output rows are split into ``K`` chunks and one loop fusion
    sums the K chunks' products for every tap (a plain elementwise sum of slices, like the forward), stacked
    into a ``(taps, N, rows/K, Wo, C)`` array; the optimization barrier keeps XLA from fusing the final
    reduction back into that loop, and the remaining reduction reads a 1/K-size contiguous array. ~20 ms.
    """
    n, h, w, c = x.shape
    kh, kw = kshape
    ho, taps_h, pad_h = _tap_plan(h, kh, stride[0], dilation[0], *pads[0])
    wo, taps_w, pad_w = _tap_plan(w, kw, stride[1], dilation[1], *pads[1])
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    if not taps_h or not taps_w:
        return jnp.zeros((kh, kw, c), acc_dtype)
    taps = len(taps_h) * len(taps_w)
    budget = max(_DK_PARTIAL_ELEMENTS, g.size // 2)
    rows = max(1, min(ho, budget // (taps * n * wo * c)), -(-ho // _DK_MAX_CHUNKS))
    chunks = -(-ho // rows)
    extra = chunks * rows - ho  # zero rows appended to g so the chunks tile it; x rows there are don't-care
    g = jnp.pad(g.astype(acc_dtype), [(0, 0), (0, extra), (0, 0), (0, 0)])
    pad_h = (pad_h[0], pad_h[1] + extra * stride[0], pad_h[2])
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), pad_h, pad_w, (0, 0, 0)])
    partial = []
    for _, si in taps_h:
        for _, sj in taps_w:
            acc = None
            for k in range(chunks):
                r0 = si + k * rows * stride[0]
                tap = lax.slice(
                    xp,
                    (0, r0, sj, 0),
                    (n, r0 + (rows - 1) * stride[0] + 1, sj + (wo - 1) * stride[1] + 1, c),
                    (1, stride[0], stride[1], 1),
                )
                term = tap.astype(acc_dtype) * g[:, k * rows : (k + 1) * rows]
                acc = term if acc is None else acc + term
            partial.append(acc)
    partial = lax.optimization_barrier(jnp.stack(partial))
    kept = jnp.sum(partial, axis=(1, 2, 3))
    if taps == kh * kw:
        return kept.reshape(kh, kw, c)
    index = {(i, j): t for t, (i, j) in enumerate((i, j) for i, _ in taps_h for j, _ in taps_w)}
    zero = jnp.zeros((c,), acc_dtype)
    return jnp.stack([kept[index[i, j]] if (i, j) in index else zero for i in range(kh) for j in range(kw)]).reshape(
        kh, kw, c
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _shifted(x, kernel, geom):
    stride, dilation, pads = geom
    return _correlate(x, kernel, stride, dilation, [(lo, hi, 0) for lo, hi in pads], x.dtype)


def _shifted_fwd(x, kernel, geom):
    return _shifted(x, kernel, geom), (x, kernel)


def _shifted_bwd(geom, res, g):
    x, kernel = res
    stride, dilation, pads = geom
    kh, kw, _ = kernel.shape
    # Input grad: xpad[s*o + d*i] received g[o] * k[i]; as a correlation over the output grad interleaved
    # with s-1 zeros, that is dx[h] = sum_j gi[h + lo - d*(k-1) + d*j] * k[k-1-j].
    dx_pads = []
    for n_in, n_out, k, s, d, (lo, _) in zip(x.shape[1:3], g.shape[1:3], (kh, kw), stride, dilation, pads):
        span = (n_out - 1) * s + 1
        dx_pads.append((d * (k - 1) - lo, n_in - span + lo, s - 1))
    dx = _correlate(g, kernel[::-1, ::-1], (1, 1), dilation, dx_pads, x.dtype)
    dk = _kernel_grad(x, g, (kh, kw), stride, dilation, [(lo, hi, 0) for lo, hi in pads])
    return dx, dk.astype(kernel.dtype)


_shifted.defvjp(_shifted_fwd, _shifted_bwd)

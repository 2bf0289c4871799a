"""Depthwise conv speed, ``impl="xla"`` vs ``impl="shifted"`` (and the alternatives tried), side by side.

Run: ``python -m fdn.bench depthwise [--batch=16 --size=64 --channels=48 --enc_channels=144 --repeats=8]``.
For every depthwise conv of the project (decoder ops at ``--channels``, the encoder's stride-2 conv at
``--enc_channels``) prints median forward and forward+backward milliseconds, plus the first call (compile +
run) of fwd+bwd. Alternatives, to justify the choice in ``fdn.models.depthwise``:

* ``autodiff``: the shifted-sum forward with JAX's own autodiff backward (no custom VJP);
* ``stacked``: im2col-style -- the k*k taps stacked on a new axis, then an einsum with the kernel.

A ``torch`` column (NCHW conv2d with groups=C, 2 threads) appears only if ``import torch`` works.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from fdn.bench._timing import time_calls
from fdn.models import depthwise

FLAGS = flags.FlagValues()
flags.DEFINE_integer("batch", 16, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("size", 64, "feature map side", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("channels", 48, "decoder channels", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("enc_channels", 144, "encoder channels", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("repeats", 8, "timed calls", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_list("impls", ["xla", "shifted", "autodiff", "stacked"], "implementations to time", flag_values=FLAGS)

# (name, kernel, stride, dilation, padding, channel flag)
CASES = [
    ("dw3x3", 3, 1, 1, 1, "channels"),
    ("dw5x5", 5, 1, 1, 2, "channels"),
    ("dw3x3 dil3", 3, 1, 3, 3, "channels"),
    ("dw5x5 dil6", 5, 1, 6, 12, "channels"),
    ("enc dw3x3 s2", 3, 2, 1, 1, "enc_channels"),
]


def _autodiff(x, kernel, stride, dilation, padding):
    """The shifted forward, differentiated by JAX itself (what the custom VJP replaces)."""
    pads = [(padding, padding, 0)] * 2
    return depthwise._correlate(x, kernel, (stride, stride), (dilation, dilation), pads, x.dtype)


def _stacked(x, kernel, stride, dilation, padding):
    """im2col: stack the k*k shifted views on a new axis and contract it with the kernel."""
    k = kernel.shape[0]
    xp = jnp.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    ho = (xp.shape[1] - dilation * (k - 1) - 1) // stride + 1
    wo = (xp.shape[2] - dilation * (k - 1) - 1) // stride + 1
    taps = [
        xp[
            :,
            i * dilation : i * dilation + (ho - 1) * stride + 1 : stride,
            j * dilation : j * dilation + (wo - 1) * stride + 1 : stride,
        ]
        for i in range(k)
        for j in range(k)
    ]
    return jnp.einsum("nhwtc,tc->nhwc", jnp.stack(taps, axis=3), kernel.reshape(k * k, -1))


def _impls():
    out = {
        name: (
            lambda impl: (
                lambda x, w, s, d, p: depthwise.depthwise_conv(x, w, stride=s, dilation=d, padding=p, impl=impl)
            )
        )(name)
        for name in ("xla", "shifted")
    }
    out["autodiff"] = _autodiff
    out["stacked"] = _stacked
    return out


def _median_ms(fn, args, repeats):
    timing = time_calls(fn, repeats=repeats, args=lambda: args)
    return 1e3 * timing.median, 1e3 * timing.first


def _torch_ms(x, kernel, stride, dilation, padding, repeats):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous().requires_grad_()
    wt = torch.tensor(np.asarray(kernel)).permute(2, 0, 1)[:, None].contiguous().requires_grad_()

    def fwd():
        return torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation, groups=xt.shape[1])

    def fwd_bwd():
        (fwd() ** 2).sum().backward()

    def med(fn):
        return 1e3 * time_calls(fn, repeats=repeats).median

    with torch.no_grad():
        f = med(fwd)
    return f, med(fwd_bwd)


def main(argv):
    FLAGS(argv)
    args = FLAGS
    impls = {name: fn for name, fn in _impls().items() if name in args.impls}
    rng = np.random.default_rng(0)
    print(
        f"depthwise conv, batch {args.batch}, {args.size}x{args.size}, backend {jax.default_backend()}, "
        f"{args.repeats} repeats; median ms (fwd / fwd+bwd), first fwd+bwd call incl. compile in []"
    )
    header = f"{'case':14s} {'C':>4s} " + " ".join(f"{name:>24s}" for name in impls)
    print(header)
    for name, k, stride, dilation, padding, channel_flag in CASES:
        c = getattr(args, channel_flag)
        x = jnp.asarray(rng.standard_normal((args.batch, args.size, args.size, c)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((k, k, c)) * 0.1, jnp.float32)
        cells = []
        for fn in impls.values():
            fwd = jax.jit(lambda x, w, fn=fn: fn(x, w, stride, dilation, padding))
            fwd_bwd = jax.jit(
                jax.grad(lambda x, w, fn=fn: jnp.sum(fn(x, w, stride, dilation, padding) ** 2), argnums=(0, 1))
            )
            f_ms, _ = _median_ms(fwd, (x, kernel), args.repeats)
            fb_ms, first = _median_ms(fwd_bwd, (x, kernel), args.repeats)
            cells.append(f"{f_ms:6.1f} / {fb_ms:6.1f} [{first / 1e3:4.1f}s]")
        torch_ms = _torch_ms(x, kernel, stride, dilation, padding, args.repeats)
        if torch_ms is not None:
            cells.append("torch {:6.1f} / {:6.1f}".format(*torch_ms))
        print(f"{name:14s} {c:4d} " + " ".join(f"{cell:>24s}" for cell in cells), flush=True)
    return 0

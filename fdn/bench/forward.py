"""Encoder and decoder forward / forward+backward time for one genotype, batch and size.

Run: ``python -m fdn.bench forward --genotype=arch0 --batch=16 --size=256 [--settings=search|released]
[--impls=shifted,xla]``. Each depthwise implementation (``fdn.models.depthwise``) is timed side by side in this one
process, so the table shows what the fast CPU kernel buys. Medians over ``--repeats`` calls after one warm-up
call; the first call (compile + run) is reported separately.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
from absl import flags

from fdn import genotype as G
from fdn.bench._timing import time_calls
from fdn.models import depthwise
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.segmenter import ModelSpec

FLAGS = flags.FlagValues()
flags.DEFINE_string("genotype", "arch0", "genotype (a list or arch0/arch1/arch2)", flag_values=FLAGS)
flags.DEFINE_integer("batch", 16, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("size", 256, "input side", lower_bound=32, flag_values=FLAGS)
flags.DEFINE_enum("settings", "search", ["search", "released"], "decoder settings", flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 21, "classes", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_list("impls", ["shifted", "xla"], "depthwise implementations to compare", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 5, "timed calls", lower_bound=1, flag_values=FLAGS)


def _time(fn, *args, repeats):
    timing = time_calls(fn, repeats=repeats, args=lambda: args)
    return timing.first, timing.median


def measure(spec: ModelSpec, batch: int, size: int, repeats: int) -> dict:
    model = spec.build()
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3))
    variables = model.init(jax.random.PRNGKey(1), x[:2])
    features = model.apply(variables, x, method=model.encode)

    def enc_loss(params, x):
        out, _ = model.apply(
            {**variables, N.PARAMS: params}, x, train=True, method=model.encode, mutable=[N.BATCH_STATS]
        )
        return sum(jnp.mean(o) for o in out)

    def dec_loss(params, feats):
        (logits, aux), _ = model.apply(
            {**variables, N.PARAMS: params}, feats, train=True, method=model.decode, mutable=[N.BATCH_STATS]
        )
        return jnp.mean(logits) + sum(jnp.mean(a) for a in aux)

    fns = {
        "encoder fwd": (jax.jit(lambda v, x: model.apply(v, x, method=model.encode)), (variables, x)),
        "encoder fwd+bwd": (jax.jit(jax.grad(enc_loss)), (variables[N.PARAMS], x)),
        "decoder fwd": (jax.jit(lambda v, f: model.apply(v, f, method=model.decode)), (variables, features)),
        "decoder fwd+bwd": (jax.jit(jax.grad(dec_loss)), (variables[N.PARAMS], features)),
    }
    return {name: _time(fn, *args, repeats=repeats) for name, (fn, args) in fns.items()}


def main(argv):
    FLAGS(argv)
    args = FLAGS
    settings = getattr(DecoderSettings, args.settings)(args.num_classes)
    spec = ModelSpec(G.parse(args.genotype), settings)
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), genotype {spec.genotype}, "
        f"{args.settings} settings, batch {args.batch}, {args.size}x{args.size}"
    )
    results = {}
    for impl in args.impls:
        depthwise.set_default_impl(impl)
        results[impl] = measure(spec, args.batch, args.size, args.repeats)
    depthwise.set_default_impl(None)
    print(f"{'part':<18}" + "".join(f"{impl + ' ms':>16}{'(1st call s)':>14}" for impl in results))
    for part in next(iter(results.values())):
        row = f"{part:<18}"
        for impl in results:
            first, median = results[impl][part]
            row += f"{median * 1e3:>16.1f}{first:>14.2f}"
        print(row)
    print(
        json.dumps(
            {
                impl: {part: {"median_s": m, "first_call_s": f} for part, (f, m) in r.items()}
                for impl, r in results.items()
            }
        )
    )
    return 0

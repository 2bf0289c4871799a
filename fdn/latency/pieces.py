"""The released-form pieces of `fdn.latency.parts` (and whole models) as callables on a target device, with their
exact parameter counts and XLA FLOPs, and how they are timed.

Everything here is the deployed form: eval mode, no auxiliary heads, BatchNorm folded into the convs
(`fdn.serve.export.fold_batch_norm`) and the weights closed over as constants, exactly what
`fdn.serve.export.inference_function` builds for the StableHLO and ONNX artifacts and what
``python -m fdn.bench latency`` times. Values are random (latency does not depend on them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from fdn import genotype as G
from fdn import tasks
from fdn.bench._timing import time_calls
from fdn.latency import parts
from fdn.models import names as N
from fdn.models.cells import AggregateCell, MergeCell
from fdn.models.decoder import DecoderSettings
from fdn.models.encoder import TAP_CHANNELS, MobileNetV2Encoder
from fdn.models.init import draw_variables, random_variables
from fdn.models.layers import ConvBN
from fdn.models.ops import make_op
from fdn.models.resize import resize_bilinear
from fdn.models.segmenter import ModelSpec, count_params
from fdn.serve import export as E

# Targets: the search's own device (JAX's default backend) or the host CPU (XLA:CPU, what a deserialized
# StableHLO artifact runs on there).
TARGETS = ("device", "cpu")


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the pieces are built for: the deployed input and decoder settings."""

    input_size: int = 256
    batch: int = 1
    agg_size: int = 64
    repeats: int = 2
    num_classes: int = 21

    def settings(self) -> DecoderSettings:
        return DecoderSettings(self.num_classes, self.agg_size, self.repeats, aux_cell=False)


def target_device(target: str):
    if target not in TARGETS:
        raise ValueError(f"unknown latency target {target!r}; choose from {', '.join(TARGETS)}")
    return jax.devices("cpu")[0] if target == "cpu" else jax.devices()[0]


def level_shapes(shape: Shape) -> list[tuple[int, int]]:
    """(H, W) of the encoder taps l1..l4 for the input size (PyTorch rounding of the stride-2 convs)."""
    enc = MobileNetV2Encoder()
    x = jax.ShapeDtypeStruct((1, shape.input_size, shape.input_size, 3), jnp.float32)
    outs = jax.eval_shape(lambda v, x: enc.apply(v, x, False), _abstract(enc, (x,)), x)
    return [tuple(o.shape[1:3]) for o in outs]


def _abstract(module, inputs):
    return jax.eval_shape(lambda *xs: module.init(jax.random.key(0), *xs, False), *inputs)


class _Encoder(nn.Module):
    """The encoder's taps up to ``deepest`` (the layers after it are dead code in such a model)."""

    deepest: int

    @nn.compact
    def __call__(self, x, train: bool):
        return MobileNetV2Encoder(name=N.ENCODER)(x, train)[: self.deepest + 1]


class _Adapter(nn.Module):
    agg_size: int

    @nn.compact
    def __call__(self, x, train: bool):
        return ConvBN(self.agg_size, 1, name=N.adapter_name(0))(x, train)


class _Op(nn.Module):
    op: int
    agg_size: int
    repeats: int

    @nn.compact
    def __call__(self, x, train: bool):
        return make_op(self.op, self.agg_size, self.repeats, N.cell_op_name(0))(x, train)


class _Add(nn.Module):
    @nn.compact
    def __call__(self, x, y, train: bool):
        return x + y


class _Agg(nn.Module):
    agg_size: int

    @nn.compact
    def __call__(self, x, y, train: bool):
        return AggregateCell(self.agg_size, name=N.aggregate_name(0))(x, y, train)


class _Merge(nn.Module):
    agg_size: int
    num_classes: int

    @nn.compact
    def __call__(self, *xs, train: bool):
        return MergeCell(self.agg_size, self.num_classes, name=N.MERGE)(list(xs), train)


class _Resize(nn.Module):
    size: tuple[int, int]

    @nn.compact
    def __call__(self, x, train: bool):
        return resize_bilinear(x, self.size)


def _piece(key, shape: Shape, levels) -> tuple[nn.Module, list[tuple[int, ...]]]:
    """The module of a piece and its input shapes."""
    b, c = shape.batch, shape.agg_size
    channels = TAP_CHANNELS

    def at(level, channels=c):
        return (b, *levels[level], channels)

    kind = key[0]
    if kind == parts.ENCODER:
        return _Encoder(key[1]), [(b, shape.input_size, shape.input_size, 3)]
    if kind == "adapter":
        return _Adapter(c), [(b, *levels[key[1]], channels[key[1]])]
    if kind == "op":
        return _Op(key[1], c, shape.repeats), [at(key[2])]
    if kind == "add":
        return _Add(), [at(key[1]), at(key[1])]
    if kind == "agg":
        return _Agg(c), [at(key[1]), at(key[2])]
    if kind == "merge":
        return _Merge(c, shape.num_classes), [at(key[1])] * key[2]
    if kind == "resize":
        return _Resize(levels[key[2]]), [at(key[1], c * key[3])]
    raise ValueError(f"unknown piece {key!r}")


@dataclasses.dataclass
class Compiled:
    """A released-form callable with its example inputs (on the target device), parameters and XLA FLOPs."""

    fn: Callable
    inputs: tuple
    parameters: int
    flops: float


def _compile(module_apply: Callable, variables, input_shapes, device, call_kw=None) -> Compiled:
    folded = jax.tree.map(jnp.asarray, E.fold_batch_norm(variables)) if variables else {}
    kw = call_kw or {}

    def infer(*xs):
        with E.folded_bn():
            return module_apply(folded, *xs, **kw)

    rng = np.random.default_rng(0)
    xs = tuple(jax.device_put(rng.normal(size=s).astype(np.float32), device) for s in input_shapes)
    with jax.default_device(device):
        jitted = jax.jit(infer)
        lowered = jitted.lower(*xs)
    flops = float((lowered.cost_analysis() or {}).get("flops", 0.0))
    n = count_params(variables[N.PARAMS], include_aux=False) if variables and N.PARAMS in variables else 0
    return Compiled(jitted, xs, n, flops)


def piece(key, shape: Shape, levels, device) -> Compiled:
    """One piece of `fdn.latency.parts`, built, folded and jitted for ``device``."""
    module, input_shapes = _piece(key, shape, levels)
    abstract = jax.eval_shape(
        lambda *xs: module.init(jax.random.key(0), *xs, train=False),
        *[jax.ShapeDtypeStruct(s, jnp.float32) for s in input_shapes],
    )
    variables = draw_variables(abstract, 0, random_bn_stats=True) if abstract else {}
    return _compile(lambda v, *xs: module.apply(v, *xs, train=False), variables, input_shapes, device)


def whole_model(genotype: G.Genotype, shape: Shape, device) -> Compiled:
    """The whole released-form model of ``genotype`` (`fdn.serve.export.inference_function`'s graph)."""
    spec = ModelSpec(genotype, shape.settings(), tasks.resolve(tasks.AUTO, shape.num_classes))
    variables = random_variables(spec, seed=0, random_bn_stats=True)
    fn = E.inference_function(spec, variables, fold_bn=True, precision="default")
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(shape.batch, shape.input_size, shape.input_size, 3)).astype(np.float32), device)
    with jax.default_device(device):
        jitted = jax.jit(fn)
        lowered = jitted.lower(x)
    flops = float((lowered.cost_analysis() or {}).get("flops", 0.0))
    return Compiled(jitted, (x,), count_params(variables[N.PARAMS], include_aux=False), flops)


def time_ms(compiled: Compiled, *, min_runs: int = 5, max_runs: int = 200, budget_s: float = 0.3) -> float:
    """Milliseconds per call: the fastest of as many timed calls as fit in ``budget_s`` (``min_runs`` at least),
    after a compile call and a warm-up call (`fdn.bench._timing`, as every fdn benchmark).

    The fastest, not the median: other processes on the machine only ever add time, so the minimum is the
    figure that moves least with the load (on a shared 2-core CPU the median of a piece moved by 2x).
    """
    probe = time_calls(compiled.fn, repeats=1, warmup=2, args=lambda: compiled.inputs)
    runs = int(min(max_runs, max(min_runs, math.ceil(budget_s / max(probe.median, 1e-6)))))
    return 1e3 * min(time_calls(compiled.fn, repeats=runs, warmup=0, args=lambda: compiled.inputs).times)

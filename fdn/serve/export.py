"""Self-contained inference artifacts of an fdn segmenter: serialized StableHLO (``jax.export``) and ONNX.

What an artifact computes: ``images -> logits``, eval mode (running BN statistics), main head only (the
auxiliary heads are training-time supervision and are not traced, so their weights are not in the file).

* Input: ``(batch, H, W, 3)`` float32, NHWC, **normalised** images: RGB / 255, minus mean
  (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225) -- as ``fdn.serve.images`` prepares them.
* Output: ``(batch, h, w, C)`` float32 at the decoder's own resolution (H/4 or H/8 rounded as PyTorch's
  stride-2 convs round; see ``fdn.models.encoder``): segmentation logits (argmax after bilinear upsampling, as
  ``fdn.predict`` does) or, for depth (C = 1), the raw prediction.

The weights are **baked into the artifact as constants**: one file that needs neither fdn nor a checkpoint,
and XLA / onnxruntime can constant-fold around them. Changing weights means exporting again (a few seconds).
A JSON file beside it (``PATH.json``) records what the artifact is (genotype, sizes, normalisation); nothing
reads it at run time.

BatchNorm folding: every BN of the segmenter directly follows a (depthwise) conv, so in eval mode its
per-channel ``x * mul + shift`` is folded into that conv's kernel (``kernel * mul``) and what is left is
an add of ``shift``; the exported graph has no BN multiplies. Differences from the unfolded forward are float
rounding (relative 1e-6 level).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from fdn.conventions import MEAN_RGB, STD_RGB
from fdn.errors import UserError
from fdn.models import depthwise
from fdn.models import names as N
from fdn.models.init import random_variables  # noqa: F401  (public here: export and latency tools use it)
from fdn.models.layers import BatchNorm
from fdn.models.segmenter import ModelSpec, eval_forward

FORMATS = ("stablehlo", "onnx")
MEAN, STD = MEAN_RGB, STD_RGB  # the sidecar's record of the normalisation
DEFAULT_PLATFORMS = ("cpu", "cuda")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for
# BN module name -> name of the conv it follows, in the same parent module.
_BN_CONV = {N.BN: N.CONV, N.DW_BN: N.DW_CONV, N.PROJECT_BN: N.PROJECT_CONV}
_SEP_BN = re.compile(f"^{N.PATTERNS['sep_bn']}$")  # a separable conv's BN follows its pointwise conv


class ExportError(UserError, RuntimeError):
    """An artifact that cannot be produced (unsupported format, missing exporter, failed conversion)."""


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """The input an artifact is compiled for: a fixed batch and size (``batch=None``: symbolic batch)."""

    batch: int | None = 1
    height: int = 512
    width: int = 512

    def input_shape(self):
        return (self.batch if self.batch else "b", self.height, self.width, 3)


def _conv_of(bn_name: str) -> str | None:
    if m := _SEP_BN.match(bn_name):
        return N.sep_conv_names(int(m.group(1)))[1]
    return _BN_CONV.get(bn_name)


def fold_batch_norm(variables) -> dict:
    """Variables in which every BN's eval-mode multiply is folded into the preceding conv's kernel and its
    ``bias`` holds the remaining shift; run them with ``folded_bn()`` active. Raises if a BN has no conv."""
    flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(dict(variables))).items()}
    out = dict(flat)
    for (collection, *path), value in flat.items():
        if collection != N.BATCH_STATS or path[-1] != N.MEAN:
            continue
        *parent, bn = path[:-1]
        conv = _conv_of(bn)
        kernel_key = (N.PARAMS, *parent, conv, N.KERNEL) if conv else None
        if kernel_key not in flat:
            raise ExportError(f"cannot fold BN {'/'.join(path[:-1])}: no conv {conv!r} beside it")
        scale, bias = flat[(N.PARAMS, *parent, bn, N.SCALE)], flat[(N.PARAMS, *parent, bn, N.BIAS)]
        var = flat[(N.BATCH_STATS, *parent, bn, N.VAR)]
        mul = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + BatchNorm.epsilon)
        kernel = flat[kernel_key]
        out[kernel_key] = (kernel.astype(np.float64) * mul).astype(kernel.dtype)  # output channels are last
        conv_bias = (N.PARAMS, *parent, conv, N.BIAS)
        if conv_bias in flat:  # none in fdn's segmenter today, but folding must stay exact if one appears
            out[conv_bias] = (flat[conv_bias].astype(np.float64) * mul).astype(flat[conv_bias].dtype)
        out[(N.PARAMS, *parent, bn, N.BIAS)] = (bias - value.astype(np.float64) * mul).astype(bias.dtype)
        out[(N.PARAMS, *parent, bn, N.SCALE)] = np.ones_like(scale)
    return traverse_util.unflatten_dict(out)


def _folded_bn_interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, BatchNorm) and context.method_name == "__call__":
        x = args[0]
        train = kwargs.get("train", args[1] if len(args) > 1 else False)
        if train:
            raise ExportError("folded BatchNorm is for eval mode only")
        return x + context.module.get_variable(N.PARAMS, N.BIAS).astype(x.dtype)
    return next_fun(*args, **kwargs)


def folded_bn():
    """Context in which every fdn BatchNorm is just ``x + bias`` (use with ``fold_batch_norm`` variables)."""
    return nn.intercept_methods(_folded_bn_interceptor)


def inference_function(spec: ModelSpec, variables, fold_bn: bool = True, precision: str = "highest"):
    """``f(images) -> logits`` with the weights closed over as constants: eval mode, no auxiliary heads."""
    model = spec.build()
    if fold_bn:
        variables = fold_batch_norm(variables)
    variables = jax.tree.map(jnp.asarray, dict(variables))

    def infer(images):
        with folded_bn() if fold_bn else contextlib.nullcontext(), _precision(precision):
            logits, _ = eval_forward(model, variables, images)
        return logits

    return infer


def _precision(precision):
    return jax.default_matmul_precision(precision) if precision != "default" else contextlib.nullcontext()


def input_struct(shape_spec: ExportSpec):
    if shape_spec.batch:
        return jax.ShapeDtypeStruct(shape_spec.input_shape(), jnp.float32)
    (b,) = jax.export.symbolic_shape("b")
    return jax.ShapeDtypeStruct((b, shape_spec.height, shape_spec.width, 3), jnp.float32)


# ----------------------------------------------------------------------------------------------------------
# StableHLO


def export_stablehlo(
    spec: ModelSpec,
    variables,
    shape_spec: ExportSpec = ExportSpec(),
    fold_bn: bool = True,
    platforms=DEFAULT_PLATFORMS,
    precision: str = "highest",
) -> bytes:
    """Serialized ``jax.export.Exported`` (weights as constants) for ``platforms``; one artifact runs on each
    of them (the depthwise convs pick their per-platform implementation inside it)."""
    fn = jax.jit(inference_function(spec, variables, fold_bn, precision))
    exported = jax.export.export(fn, platforms=tuple(platforms))(input_struct(shape_spec))
    return bytes(exported.serialize())


def load_stablehlo(path_or_bytes):
    """``f(images) -> logits`` from a serialized artifact; needs only jax (``jax.export.deserialize``)."""
    data = path_or_bytes
    if not isinstance(data, (bytes, bytearray)):
        data = Path(data).read_bytes()
    exported = jax.export.deserialize(bytearray(data))
    return jax.jit(exported.call)


# ----------------------------------------------------------------------------------------------------------
# ONNX


def export_onnx(
    spec: ModelSpec,
    variables,
    path,
    shape_spec: ExportSpec = ExportSpec(),
    fold_bn: bool = True,
    opset: int = 23,
    jax2onnx_optimizer: bool = False,
) -> Path:
    """One self-contained ONNX file through jax2onnx.

    Depthwise convs are traced as XLA grouped convs (ONNX ``Conv`` with ``group=C``, which onnxruntime runs
    natively), not as fdn's shifted sums. jax2onnx's own graph optimizer is skipped by default: in jax2onnx
    0.17 it finds producers by scanning the whole graph and restarts after every rewrite, which takes minutes
    on the segmenter's ~1,400 nodes (mostly the Transposes around NHWC convs); onnxruntime's optimizer removes
    the same transposes when it loads the file. Unused initializers are dropped and every tensor is stored
    inline (no ``.onnx.data`` beside the file).
    """
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs jax2onnx: `pip install jax2onnx onnx onnxruntime` (the `export` extra of fdn)"
        ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fn = inference_function(spec, variables, fold_bn, "default")
    shape = [d if isinstance(d, int) else "B" for d in shape_spec.input_shape()]
    previous = depthwise._default_impl
    depthwise.set_default_impl("xla")
    try:
        with contextlib.nullcontext() if jax2onnx_optimizer else _without_jax2onnx_optimizer():
            to_onnx(
                fn,
                [tuple(shape)],
                model_name="fdn_segmenter",
                opset=opset,
                return_mode="file",
                output_path=str(path),
                input_names=["images"],
                output_names=["logits"],
            )
    except ExportError:
        raise
    except Exception as err:  # jax2onnx raises NotImplementedError / ValueError / ... for unsupported ops
        raise ExportError(f"jax2onnx could not convert the model: {type(err).__name__}: {err}") from err
    finally:
        depthwise.set_default_impl(previous)
    _make_self_contained(path)
    return path


@contextlib.contextmanager
def _without_jax2onnx_optimizer():
    try:
        from jax2onnx.converter import conversion_api
    except ImportError:  # another jax2onnx layout: leave it alone
        yield
        return
    name = "_optimize_graph_with_failure_policy"
    original = getattr(conversion_api, name, None)
    if original is None:
        yield
        return
    setattr(conversion_api, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        setattr(conversion_api, name, original)


def _make_self_contained(path: Path):
    """Drops initializers no node reads and rewrites the model with every tensor inline (< 2 GiB here)."""
    import onnx

    model = onnx.load(str(path))  # also reads any external .data file
    used = {name for node in model.graph.node for name in node.input}
    used |= {name for f in model.functions for node in f.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    for data in path.parent.glob(path.name + ".data"):
        data.unlink()
    onnx.save_model(model, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path))


def onnx_session(path, threads: int | None = None):
    """An onnxruntime CPU session for an exported file (``threads``: intra-op threads, None = default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, images: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(images, np.float32)})[0]


# ----------------------------------------------------------------------------------------------------------
# Files


def describe(spec: ModelSpec, shape_spec: ExportSpec, fmt: str, fold_bn: bool, **extra) -> dict:
    """What the JSON beside an artifact says."""
    return {
        "format": fmt,
        "model": spec.to_dict(),
        "input": {
            "shape": list(shape_spec.input_shape()),
            "layout": "NHWC",
            "dtype": "float32",
            "normalisation": {"scale": 1 / 255, "mean": MEAN, "std": STD},
        },
        "output": "logits (N, h, w, num_classes) at the decoder's resolution (depth: 1 raw channel)",
        "eval_mode": True,
        "aux_heads": False,
        "bn_folded": fold_bn,
        **extra,
    }


def export_checkpoint(
    checkpoint_dir,
    fmt: str,
    out,
    shape_spec: ExportSpec = ExportSpec(),
    fold_bn: bool = True,
    platforms=DEFAULT_PLATFORMS,
    overwrite: bool = False,
) -> str:
    """Exports a model checkpoint directory to ``out`` in ``fmt``; returns a one-line report."""
    from fdn.serve import checkpoint

    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {fmt!r}")
    unknown = [p for p in platforms if p not in PLATFORMS]
    if fmt == "stablehlo" and (unknown or not platforms):  # an unknown name was kept in the sidecar, exit 0
        raise ExportError(f"--platforms {list(platforms)}: give one or more of {', '.join(PLATFORMS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    spec, variables, _ = checkpoint.load_model(checkpoint_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "stablehlo":
        out.write_bytes(export_stablehlo(spec, variables, shape_spec, fold_bn, platforms))
        info = describe(
            spec,
            shape_spec,
            fmt,
            fold_bn,
            platforms=list(platforms),
            load="jax.export.deserialize(bytearray(open(PATH, 'rb').read())).call(images)",
        )
    else:
        export_onnx(spec, variables, out, shape_spec, fold_bn)
        info = describe(
            spec, shape_spec, fmt, fold_bn, load="onnxruntime.InferenceSession(PATH).run(None, {'images': images})[0]"
        )
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text(json.dumps(info, indent=2))
    size = sum(p.stat().st_size for p in out.parent.glob(out.name + "*") if p != sidecar)
    return (
        f"wrote {out} ({fmt}, {size / 2**20:.1f} MiB, input {tuple(shape_spec.input_shape())} NHWC "
        f"normalised, {'BN folded, ' if fold_bn else ''}no aux heads) and {sidecar.name}"
    )

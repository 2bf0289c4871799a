"""``python -m fdn.bench latency``: eval-mode inference latency, batch 1, at the paper's input sizes.

The paper's runtime figure (``shared/reference/paper.md`` 5.3: 1080Ti and Jetson TX2, 64..512 px, batch 1)
is what this reproduces on whatever device JAX runs on, for fdn's own jitted forward and for the exported
artifacts (StableHLO deserialized and called through jax; ONNX in onnxruntime when installed). Eval mode
only (running BN statistics, no auxiliary heads): the authors once published train-mode latencies by mistake.

Each measurement: compile / export first (reported apart), ``--warmup`` untimed calls, then ``--runs`` timed
calls, each ending in ``block_until_ready`` (device sync; onnxruntime returns host arrays). Reported: median
and the 10th / 90th percentiles in ms.

Examples::

    python -m fdn.bench latency --checkpoint=ckpt/arch0_voc
    python -m fdn.bench latency --genotype=arch1 --runtimes=fdn,stablehlo --sizes=64,512 --runs=50

Without ``--checkpoint`` the model is ``--genotype`` with the released settings (agg 64, repeats 2, no aux
cells) and random weights: latency does not depend on the values.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import flags

from fdn import tasks
from fdn.bench._timing import time_calls
from fdn.errors import InputError
from fdn.models import names as N

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "checkpoint", None, "fdn model checkpoint directory; else --genotype with random weights", flag_values=FLAGS
)
flags.DEFINE_string("genotype", "arch0", "released name or literal, used without --checkpoint", flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 21, "output channels, used without --checkpoint", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum(
    "task",
    tasks.AUTO,
    [tasks.AUTO, *tasks.NAMES],
    "the head's task, used without --checkpoint (auto: depth iff num_classes == 1)",
    flag_values=FLAGS,
)
flags.DEFINE_list("sizes", ["64", "128", "256", "384", "512"], "square input sizes", flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_list(
    "runtimes", ["fdn", "stablehlo", "onnx"], "what to time (onnx skipped if not installed)", flag_values=FLAGS
)
flags.DEFINE_integer("warmup", 3, "untimed calls after compiling", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("runs", 20, "timed calls per size and runtime", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum(
    "precision",
    "highest",
    ["highest", "default"],
    "matmul/conv precision (default allows TF32 on recent GPUs)",
    flag_values=FLAGS,
)
flags.DEFINE_bool("fold_bn", True, "fold BN in the exported artifacts", flag_values=FLAGS)
flags.DEFINE_integer("onnx_threads", 0, "onnxruntime intra-op threads (0: its default)", flag_values=FLAGS)


def summarize(times_s) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {
        "median": float(np.median(ms)),
        "p10": float(np.percentile(ms, 10)),
        "p90": float(np.percentile(ms, 90)),
        "runs": len(ms),
    }


def load_model(checkpoint_dir, genotype, num_classes, task=tasks.AUTO):
    from fdn import genotype as G
    from fdn.models.decoder import DecoderSettings
    from fdn.models.segmenter import ModelSpec
    from fdn.serve import checkpoint
    from fdn.serve.export import random_variables

    if checkpoint_dir:
        spec, variables, _ = checkpoint.load_model(checkpoint_dir)
        return spec, variables, str(checkpoint_dir)
    spec = ModelSpec(G.parse(genotype), DecoderSettings.released(num_classes), tasks.resolve(task, num_classes))
    what = f"{genotype} (released settings, random weights)"
    return spec, random_variables(spec, seed=0, random_bn_stats=True), what


def runtimes_available(requested) -> list[str]:
    out = []
    for name in requested:
        if name == "onnx" and (
            importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("jax2onnx") is None
        ):
            print("onnx: skipped (pip install jax2onnx onnx onnxruntime)")
            continue
        if name not in ("fdn", "stablehlo", "onnx"):
            raise InputError(f"--runtimes: unknown runtime {name!r}; choose from fdn, stablehlo, onnx")
        out.append(name)
    return out


def measure(
    spec,
    variables,
    size: int,
    runtime: str,
    batch=1,
    warmup=3,
    runs=20,
    precision="highest",
    fold_bn=True,
    onnx_threads=0,
    workdir=None,
) -> dict:
    """One row of the table: ``{'median', 'p10', 'p90', 'runs', 'prepare_s'}`` (prepare = compile/export)."""
    import contextlib

    import jax

    from fdn.serve import export as E
    from fdn.serve.inference import make_forward

    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    ctx = jax.default_matmul_precision(precision) if precision != "default" else contextlib.nullcontext()
    start = time.perf_counter()
    if runtime == "fdn":
        forward = make_forward(spec, with_aux=False)
        xd, vd = jax.device_put(x), jax.device_put(variables)

        def call():
            with ctx:
                return forward(vd, xd)[0].block_until_ready()
    elif runtime == "stablehlo":
        blob = E.export_stablehlo(
            spec,
            variables,
            E.ExportSpec(batch, size, size),
            fold_bn,
            platforms=(jax.export.default_export_platform(),),
            precision=precision,
        )
        fn, xd = E.load_stablehlo(blob), jax.device_put(x)

        def call():
            return fn(xd).block_until_ready()
    else:
        path = E.export_onnx(
            spec,
            variables,
            Path(workdir or tempfile.mkdtemp()) / f"model_{size}.onnx",
            E.ExportSpec(batch, size, size),
            fold_bn,
        )
        session = E.onnx_session(path, onnx_threads or None)

        def call():
            return E.run_onnx(session, x)

    call()  # compile / session warm-up
    prepare_s = time.perf_counter() - start
    return {**summarize(time_calls(call, repeats=runs, warmup=warmup).times), "prepare_s": prepare_s}


def format_table(rows, header: str) -> str:
    lines = [
        header,
        f"{'size':>9} {'runtime':<10} {'median':>9} {'p10':>9} {'p90':>9} {'prepare':>9}",
        f"{'':>9} {'':<10} {'ms':>9} {'ms':>9} {'ms':>9} {'s':>9}",
    ]
    for size, runtime, r in rows:
        lines.append(
            f"{f'{size}x{size}':>9} {runtime:<10} {r['median']:9.2f} {r['p10']:9.2f} "
            f"{r['p90']:9.2f} {r['prepare_s']:9.1f}"
        )
    return "\n".join(lines)


def main(argv):
    FLAGS(argv)
    import jax

    from fdn.models.segmenter import param_counts

    spec, variables, what = load_model(FLAGS.checkpoint, FLAGS.genotype, FLAGS.num_classes, FLAGS.task)
    runtimes = runtimes_available(FLAGS.runtimes)
    device = jax.devices()[0]
    header = (
        f"eval-mode latency, batch {FLAGS.batch}: {what}; "
        f"{param_counts(variables[N.PARAMS])['without_aux']:,} parameters without aux heads\n"
        f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}, precision "
        f"{FLAGS.precision}, {FLAGS.warmup} warm-up + {FLAGS.runs} timed calls; "
        "prepare = compile/export"
    )
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in (int(s) for s in FLAGS.sizes):
            for runtime in runtimes:
                r = measure(
                    spec,
                    variables,
                    size,
                    runtime,
                    FLAGS.batch,
                    FLAGS.warmup,
                    FLAGS.runs,
                    FLAGS.precision,
                    FLAGS.fold_bn,
                    FLAGS.onnx_threads,
                    workdir,
                )
                rows.append((size, runtime, r))
                print(f"{size}x{size} {runtime}: median {r['median']:.2f} ms", flush=True)
    print(format_table(rows, header))
    return 0

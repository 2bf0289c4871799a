"""``python -m fdn.bench latency_model``: how well the search's latency estimate (`fdn.latency.table`) ranks and
prices whole released models it never saw.

Builds the latency model (per-piece table + correction fitted on ``--calibration`` whole models), then times
``--genotypes`` random released models (a seed other than the calibration's) the same way and prints, per
model, the estimate and the measurement, and overall the Spearman rank correlation and the median relative
error, for the raw piece sum and for both corrections (``linear``, ``loglinear``) fitted on the same
calibration models. The acceptance bar of issue #15: Spearman >= 0.9, median relative error <= 15%.

Timings on a shared machine move with its load: the load average is printed before and after; run it when the
machine is quiet.

Examples::

    python -m fdn.bench latency_model
    python -m fdn.bench latency_model --target=cpu --input_size=512 --genotypes=20 --calibration=8
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from fdn.bench._rank import ranks, spearman  # noqa: F401  (ranks: this bench's tests read it here)

FLAGS = flags.FlagValues()
flags.DEFINE_enum("target", "device", ["device", "cpu"], "where latency is measured", flag_values=FLAGS)
flags.DEFINE_integer("input_size", 256, "square input size of the deployed model", lower_bound=32, flag_values=FLAGS)
flags.DEFINE_integer("batch", 1, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 21, "output channels", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("genotypes", 20, "random genotypes to check the estimate on", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "seed of those genotypes", flag_values=FLAGS)
flags.DEFINE_integer("calibration", 6, "whole models the correction is fitted on", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer(
    "rounds", 5, "interleaved timing rounds (each keeps its fastest call)", lower_bound=1, flag_values=FLAGS
)


def median_relative_error(estimate, measured) -> float:
    e, m = np.asarray(estimate, float), np.asarray(measured, float)
    return float(np.median(np.abs(e - m) / m))


def evaluate(model, genotypes, measured) -> dict:
    """``{name: (spearman, median relative error, estimates)}`` for the raw sum and each correction."""
    from fdn.latency import table

    raw = [model.raw_ms(g) for g in genotypes]
    cal_raw = [c["raw_ms"] for c in model.calibration]
    cal_ms = [c["measured_ms"] for c in model.calibration]
    out = {"raw sum": (spearman(raw, measured), median_relative_error(raw, measured), raw)}
    for fit in table.FITS:
        corr = table.fit_correction(cal_raw, cal_ms, fit)
        est = [table.apply_correction(corr, r) for r in raw]
        out[f"{fit} ({corr['a']:+.2f}, x{corr['b']:.3f})"] = (
            spearman(est, measured),
            median_relative_error(est, measured),
            est,
        )
    return out


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main(argv):
    FLAGS(argv)
    import jax

    from fdn.latency import pieces, table

    shape = pieces.Shape(FLAGS.input_size, FLAGS.batch, num_classes=FLAGS.num_classes)
    device = pieces.target_device(FLAGS.target)
    print(
        f"latency model check: target {FLAGS.target} ({device.platform}, {device.device_kind}), jax "
        f"{jax.__version__}, input {FLAGS.batch}x{FLAGS.input_size}x{FLAGS.input_size}, released form (agg "
        f"{shape.agg_size}, repeats {shape.repeats}, no aux, BN folded); {_load()}",
        flush=True,
    )
    start = time.time()
    model = table.build(shape, FLAGS.target, FLAGS.calibration, "linear", log=lambda m: print(m, flush=True))
    built = time.time() - start
    rng = np.random.default_rng(FLAGS.seed)
    genotypes = [table.random_genotype(rng) for _ in range(FLAGS.genotypes)]
    start = time.time()
    measured = table.measure_models(genotypes, shape, FLAGS.target, rounds=FLAGS.rounds)
    checked = time.time() - start
    results = evaluate(model, genotypes, measured)
    names = list(results)
    print(f"\n{'#':>3} {'measured ms':>12} " + " ".join(f"{n.split(' ')[0]:>12}" for n in names) + "  genotype")
    for i, (g, m) in enumerate(zip(genotypes, measured)):
        cols = " ".join(f"{results[n][2][i]:12.2f}" for n in names)
        print(f"{i:>3} {m:12.2f} {cols}  {g}")
    print(f"\nlatency model built in {built:.0f} s; {len(genotypes)} models checked in {checked:.0f} s; {_load()}")
    for n in names:
        rho, mre = results[n][:2]
        print(f"{n:<32} Spearman {rho:.3f}  median relative error {100 * mre:.1f}%")
    return 0

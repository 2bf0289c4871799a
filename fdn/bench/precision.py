"""``python -m fdn.bench precision``: does training candidates in bfloat16 rank them as float32 does?

Samples ``--genotypes`` genotypes (seeded, the random-search agent: as ``fdn.bench search``) and trains each
with the real ``fdn.candidate.CandidateTrainer`` twice, at ``candidate.precision='float32'`` and at
``'bfloat16'`` (`fdn.candidate.precision`), on the preset's data (``fdn.bench._search_data``: the search's
input pipeline; a random encoder with its BN statistics re-estimated as the search does; no teacher, as the
bench has no trained one: its stand-in's zero logits would only pull every candidate towards 0) with
identical seeds and data: two trainers built alike, each with its own
stage-2 stream from the same seed, run genotype by genotype, float32 then bfloat16, so candidate i sees the
same batches in both and load changes on a shared machine hit both alike. Prints the device, JAX version and
settings, a table (genotype hash, float32 reward, bfloat16 reward, seconds of each: train + eval, compiles
apart), Spearman's rho (ties averaged) and Pearson's r of the two reward lists, and a JSON object as the last
line. Issue #12's rule: bfloat16 may become the default only where rho >= 0.95 (`SWITCH_RHO`).

The reward is stage 2's (``--max_stage=2``, the search's full candidate) or stage 1's (``--max_stage=1``).
``--steps_scale`` shortens every stage (``fdn.bench._presets``); a candidate that fails in either precision is
listed and left out of the correlations (its stage-2 stream is then out of step for the rest: rerun).

    python -m fdn.bench precision --preset=demo --genotypes=20
    python -m fdn.bench precision --preset=demo --genotypes=20 --max_stage=1 --steps_scale=0.5
"""

from __future__ import annotations

import json
import time

import jax
from absl import flags

from fdn.bench import _presets
from fdn.bench._rank import pearson, spearman
from fdn.bench.search import bench_config, define_run_flags, describe, sample_genotypes
from fdn.candidate import CandidateFailure
from fdn.candidate.precision import BFLOAT16, FLOAT32, PRECISIONS
from fdn.errors import UserError

SWITCH_RHO = 0.95  # issue #12: keep float32 the default unless the rank correlation reaches this

FLAGS = flags.FlagValues()
flags.DEFINE_enum(
    "preset", "demo", list(_presets.PRESETS), "search settings to train candidates with", flag_values=FLAGS
)
flags.DEFINE_integer("genotypes", 20, "genotypes to train in both precisions", flag_values=FLAGS)
flags.DEFINE_enum("max_stage", "2", ["1", "2"], "the reward compared: stage 1's or stage 2's", flag_values=FLAGS)
define_run_flags(FLAGS)


class PrecisionBenchError(UserError, ValueError):
    """A flag value the bench cannot run with."""


def check_flags(f) -> None:
    if f.genotypes < 3:
        raise PrecisionBenchError(f"--genotypes must be at least 3 (a rank correlation needs them), got {f.genotypes}")


def trainers(config, data: str, data_dir: str) -> tuple[dict, str, dict]:
    """``({precision: trainer}, data name, {precision: set-up seconds})``: one ``_search_data.build`` per
    precision, from configs equal but for ``candidate.precision`` (the same data, cache and stage-2 stream)."""
    from fdn.bench import _search_data  # the data pipeline only once the flags are known to be good

    out, seconds, name = {}, {}, ""
    for precision in PRECISIONS:
        c = config.copy_and_resolve_references()
        c.candidate.precision = precision
        setup = _search_data.build(c, data=data, data_dir=data_dir, calibrate=True)
        out[precision], name, seconds[precision] = setup.trainer, setup.data_name, setup.seconds
    return out, name, seconds


def train_one(trainer, genotype, key, max_stage: int) -> dict:
    """One candidate's reward and seconds (train + eval; compile apart), or its failure reason."""
    try:
        results = [trainer.stage1(genotype, key)]
        if max_stage == 2:
            results.append(trainer.stage2(genotype, results[0], key))
    except CandidateFailure as err:
        return {"reward": None, "failure": err.reason}
    return {
        "reward": float(results[-1].reward),
        "seconds": sum(r.seconds["train"] + r.seconds["eval"] for r in results),
        "compile": sum(r.seconds["compile"] for r in results),
    }


def compare(by_precision: dict, genotypes, max_stage: int, log=None) -> list[dict]:
    """Every genotype through every trainer of ``by_precision``, interleaved; one row per genotype."""
    rows = []
    for i, genotype in enumerate(genotypes):
        key = jax.random.PRNGKey(i)  # raw uint32 keys: what the ahead-of-time compiled programs take
        row = {
            "genotype": genotype.short_hash,
            **{p: train_one(t, genotype, key, max_stage) for p, t in by_precision.items()},
        }
        rows.append(row)
        (log or _say)(format_row(row, i, len(genotypes)))
    return rows


def _say(line: str) -> None:
    print(line, flush=True)


def format_row(row: dict, i: int, n: int) -> str:
    cells = []
    for p in PRECISIONS:
        r = row[p]
        cells.append(
            f"{p} failed: {r['failure']}" if r["reward"] is None else f"{r['reward']:.4f} {r['seconds']:6.2f} s"
        )
    return f"{i + 1:>3}/{n} {row['genotype']:<12} " + "   ".join(cells)


def summary(rows: list[dict]) -> dict:
    """Correlations over the genotypes scored in both precisions, and the mean seconds of each."""
    ok = [r for r in rows if all(r[p]["reward"] is not None for p in PRECISIONS)]
    f32, bf16 = ([r[p]["reward"] for r in ok] for p in PRECISIONS)
    rho = spearman(f32, bf16)
    seconds = {p: sum(r[p]["seconds"] for r in ok) / max(len(ok), 1) for p in PRECISIONS}
    return {
        "scored": len(ok),
        "failed": len(rows) - len(ok),
        "spearman": rho,
        "pearson": pearson(f32, bf16),
        "mean_abs_diff": sum(abs(a - b) for a, b in zip(f32, bf16)) / max(len(ok), 1),
        "mean_seconds": seconds,
        "bf16_speedup": seconds[FLOAT32] / seconds[BFLOAT16] if seconds[BFLOAT16] else float("nan"),
        "switch_default": bool(rho >= SWITCH_RHO),  # NaN compares False
    }


def main(argv):
    """Bad flags raise ``flags.Error`` or a ``UserError``: ``fdn.bench.__main__`` reports them in one line."""
    FLAGS(argv)
    check_flags(FLAGS)
    max_stage = int(FLAGS.max_stage)
    config, schedule = bench_config(FLAGS.preset, FLAGS.steps_scale, FLAGS.programs, FLAGS.compilation_cache)
    config.teacher.kind = "none"  # see the module docstring
    start = time.perf_counter()
    by_precision, data_name, setup_seconds = trainers(config, FLAGS.data, FLAGS.data_dir)
    info = describe(config, schedule)
    print(
        f"fdn.bench precision: preset {FLAGS.preset}, genotypes {FLAGS.genotypes} (seed {FLAGS.seed}), "
        f"steps_scale {FLAGS.steps_scale}, max_stage {max_stage}, data {data_name}"
    )
    print("  " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print(f"  set-up {time.perf_counter() - start:.1f} s; seconds per candidate = train + eval (compiles apart)")
    print(f"{'':>7} {'genotype':<12} {'float32 reward, s':<22} bfloat16 reward, s", flush=True)
    rows = compare(by_precision, sample_genotypes(FLAGS.genotypes, FLAGS.seed), max_stage)
    s = summary(rows)
    compiles = {p: round(sum(r[p].get("compile", 0.0) for r in rows), 1) for p in PRECISIONS}
    print(
        f"\nSpearman rho {s['spearman']:.4f}, Pearson r {s['pearson']:.4f} over {s['scored']} genotypes "
        f"({s['failed']} failed); mean |f32 - bf16| {s['mean_abs_diff']:.4f}; mean s per candidate: "
        f"float32 {s['mean_seconds'][FLOAT32]:.2f}, bfloat16 {s['mean_seconds'][BFLOAT16]:.2f}; compile s {compiles}"
    )
    verdict = "may switch to bfloat16" if s["switch_default"] else "keep float32"
    print(f"issue #12 rule (switch only at rho >= {SWITCH_RHO}): {verdict}")
    print(
        json.dumps(
            {
                "bench": "precision",
                "preset": FLAGS.preset,
                "genotypes": FLAGS.genotypes,
                "seed": FLAGS.seed,
                "steps_scale": FLAGS.steps_scale,
                "max_stage": max_stage,
                **info,
                "data": data_name,
                "setup_seconds": setup_seconds,
                "compile_seconds": compiles,
                **s,
                "rows": rows,
            }
        )
    )
    return 0

"""``python -m fdn.bench search``: whole candidates through the real trainer, measured phase by phase.

Runs ``--candidates`` random genotypes (seeded) through ``fdn.candidate.CandidateTrainer``, stage 1 and
stage 2 each (the early-stop rule is applied arithmetically, not drawn), on data of the preset's shapes
through fdn's input pipeline (synthetic VOC-sized JPEGs when the preset's dataset is not prepared; see
``fdn.bench._search_data``). Prints the device, JAX version and settings; a table of seconds per phase
(stage-1 train / eval, stage-2 train / eval, input-pipeline wait, compile, host set-up) as run and scaled to
the preset's full length; seconds per full candidate and candidates per hour at ``--early_stop_rate``; per
compiled program XLA's FLOPs and bytes per step with the achieved TFLOP/s and GB/s and their fraction of the
device's peak (``fdn.bench._cost``: known GPUs only); and a JSON object as the last line.

``--steps_scale`` shortens every stage for CPU runs, keeping batch sizes and crops so per-step figures stay
comparable (``fdn.bench._presets``). Presets: ``paper`` (configs/voc.py), ``demo`` (configs/demo.py),
``tiny`` (configs/demo.py:tiny, for tests). ``--programs`` and ``--precision`` override the preset's
``candidate.programs`` / ``candidate.precision``; ``$FDN_DEPTHWISE_IMPL`` picks the depthwise kernels
(``fdn.models.depthwise``); the settings line names all three.

    python -m fdn.bench search --preset=paper --steps_scale=0.02 --candidates=2
    python -m fdn.bench search --preset=demo --programs=per_genotype
    python -m fdn.bench search --preset=paper --candidates=2 --precision=bfloat16
"""

from __future__ import annotations

import json
import platform

import jax
from absl import flags

from fdn import host_memory
from fdn.agents import make_agent
from fdn.bench import _presets, _search_report
from fdn.bench._cost import peak_of
from fdn.candidate import CandidateFailure
from fdn.candidate.precision import PRECISIONS
from fdn.candidate.programs import KINDS, config_stage1_work, resolve_kind
from fdn.errors import UserError
from fdn.models import depthwise

# The share of candidates the paper's progressive rule stops after stage 1 (issue #12: the official 38%;
# field logs report 35-40%, shared/reference/scale-out-notes.md).
OFFICIAL_EARLY_STOP_RATE = 0.38


def define_run_flags(flag_values) -> None:
    """The flags of a bench that trains sampled genotypes on a preset (this one, ``fdn.bench precision``)."""
    flags.DEFINE_enum(
        "programs",
        None,
        list(KINDS),
        "decoder programs (default: the preset's candidate.programs; 'auto' is resolved for this platform at the "
        "preset's full length, fdn.candidate.programs.resolve_kind)",
        flag_values=flag_values,
    )
    flags.DEFINE_float("steps_scale", 1.0, "shorten every stage by this factor in (0, 1]", flag_values=flag_values)
    flags.DEFINE_enum(
        "data",
        "auto",
        ["auto", "prepared", "synthetic"],
        "the preset's dataset (auto: if prepared, else synthetic; fdn_shapes is prepared on the fly)",
        flag_values=flag_values,
    )
    flags.DEFINE_string("data_dir", "", "tfds data dir of the preset's dataset", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "seed of the sampled genotypes", flag_values=flag_values)
    flags.DEFINE_bool(
        "compilation_cache",
        False,
        "keep the preset's persistent XLA cache (off: compiles are timed cold)",
        flag_values=flag_values,
    )


FLAGS = flags.FlagValues()
flags.DEFINE_enum("preset", "paper", list(_presets.PRESETS), "search settings to measure", flag_values=FLAGS)
flags.DEFINE_integer("candidates", 2, "candidates to run (the first pays the compiles)", flag_values=FLAGS)
define_run_flags(FLAGS)
flags.DEFINE_enum(
    "precision",
    None,
    list(PRECISIONS),
    "activations' dtype (default: the preset's candidate.precision)",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "early_stop_rate", OFFICIAL_EARLY_STOP_RATE, "share of candidates stopped after stage 1", flag_values=FLAGS
)


class BenchFlagError(UserError, ValueError):
    """A flag value the bench cannot run with."""


def bench_config(preset: str, steps_scale: float, programs: str | None, compilation_cache: bool):
    """The preset's search config shortened by ``steps_scale``, and its ``Schedule``."""
    config = _presets.preset_config(preset)
    cc = config.candidate  # 'auto' chooses for the full-length stage 1, before it is shortened
    cc.programs = resolve_kind(programs or cc.programs, config_stage1_work(cc.stage1), jax.default_backend())
    schedule = _presets.scale_steps(config, steps_scale)
    if not compilation_cache:
        config.candidate.compilation_cache_dir = ""
    return config, schedule


def sample_genotypes(n: int, seed: int) -> list:
    """``n`` genotypes drawn uniformly from the search space (the random-search agent), seeded."""
    agent = make_agent("random")
    genotypes, _, _ = agent.propose(agent.init(jax.random.key(seed)), n)
    return genotypes


def run_candidates(trainer, genotypes, log=print) -> tuple[list[dict], list[str]]:
    """Both stages of every genotype; (phase seconds per scored candidate, failure reasons)."""
    per_candidate, failures = [], []
    for i, genotype in enumerate(genotypes):
        key = jax.random.PRNGKey(i)  # raw uint32 keys: what the ahead-of-time compiled programs take
        try:
            r1 = trainer.stage1(genotype, key)
            r2 = trainer.stage2(genotype, r1, key)
        except CandidateFailure as err:
            failures.append(err.reason)
            log(f"candidate {i + 1}: failed: {err.reason}")
            continue
        phases = _search_report.phase_seconds(r1.seconds, r2.seconds)
        per_candidate.append(phases)
        log(
            f"candidate {i + 1}/{len(genotypes)} {genotype.short_hash}: {sum(phases.values()):.2f} s (compile "
            f"{phases['compile stage 1'] + phases['compile stage 2']:.2f}), rewards {r1.reward:.4f} / {r2.reward:.4f}"
        )
    return per_candidate, failures


def describe(config, schedule) -> dict:
    cc = config.candidate
    device = jax.devices()[0]
    return {
        "device": str(device),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "host_hugepages": host_memory.state(),
        "programs": cc.programs,
        "precision": cc.precision,
        "depthwise": depthwise.impl_on(device.platform),
        "agg_size": cc.decoder.agg_size,
        "stage1": f"{schedule.stage1_steps} steps x batch {cc.stage1.batch_size}, crop {cc.stage1.crop_size}, "
        f"cache {cc.stage1.num_examples}",
        "stage2": f"{schedule.stage2_steps} steps x batch {cc.stage2.batch_size}, crop {cc.stage2.crop_size}",
        "val": f"{schedule.val_batches} batches x {cc.val.batch_size} at {cc.val.crop_size}",
    }


def main(argv):
    """Bad flags raise ``flags.Error`` or a ``UserError``: ``fdn.bench.__main__`` reports them in one line."""
    FLAGS(argv)
    if FLAGS.candidates < 1:
        raise BenchFlagError(f"--candidates must be at least 1, got {FLAGS.candidates}")
    if not 0 <= FLAGS.early_stop_rate < 1:
        raise BenchFlagError(f"--early_stop_rate must be in [0, 1), got {FLAGS.early_stop_rate}")
    config, schedule = bench_config(FLAGS.preset, FLAGS.steps_scale, FLAGS.programs, FLAGS.compilation_cache)
    config.candidate.precision = FLAGS.precision or config.candidate.precision
    # The data pipeline is imported only once the flags are known to be good.
    from fdn.bench import _search_data

    setup = _search_data.build(config, data=FLAGS.data, data_dir=FLAGS.data_dir)
    info = describe(config, schedule)
    print(f"fdn.bench search: preset {FLAGS.preset}, steps_scale {FLAGS.steps_scale}, data {setup.data_name}")
    print("  " + "; ".join(f"{k} {v}" for k, v in info.items()))
    print("  set-up s: " + ", ".join(f"{k} {v:.1f}" for k, v in setup.seconds.items()), flush=True)
    per_candidate, failures = run_candidates(setup.trainer, sample_genotypes(FLAGS.candidates, FLAGS.seed))
    if not per_candidate:
        print(json.dumps({"bench": "search", "preset": FLAGS.preset, **info, "failures": failures}))
        return 1
    return report(config, schedule, info, per_candidate, failures, setup)


def report(config, schedule, info, per_candidate, failures, setup) -> int:
    steady = _search_report.steady_state(per_candidate)
    universal = config.candidate.programs == "universal"
    compile_names = ("compile stage 1", "compile stage 2")
    recurring = {k: 0.0 if universal else steady[k] for k in compile_names}
    full = _search_report.full_scale(steady, schedule, compile_per_candidate=recurring)
    expected = _search_report.candidate_seconds(full, FLAGS.early_stop_rate)
    peak = peak_of(info["device_kind"])
    programs = _search_report.program_rows(setup.trainer.compiled_programs(), steady, schedule, peak)
    once = sum(per_candidate[0][k] for k in compile_names) if universal else 0.0
    print(
        f"\nsteady state: mean of candidates {'2..' if len(per_candidate) > 1 else ''}{len(per_candidate)}; "
        f"compile {'once per search' if universal else 'per new genotype'}"
        f"{f' (first candidate: {once:.1f} s)' if universal else ''}"
    )
    print("\n".join(_search_report.format_table(steady, full, schedule, early_stop_rate=FLAGS.early_stop_rate)))
    print(f"\nper compiled program (XLA cost analysis; peak: {peak.source if peak else 'unknown device'})")
    print("\n".join(_search_report.format_programs(programs)))
    if universal:
        print(
            "universal programs: XLA counts the decoder's loops (cell jobs, slots) once; these rows understate a step"
        )
    print(
        json.dumps(
            {
                "bench": "search",
                "preset": FLAGS.preset,
                "steps_scale": FLAGS.steps_scale,
                **info,
                "data": setup.data_name,
                "candidates": len(per_candidate),
                "failures": failures,
                "setup_seconds": setup.seconds,
                "schedule": vars(schedule),
                "phases": steady,
                "phases_full": full,
                "candidate_seconds": sum(steady.values()),
                "candidate_seconds_full": sum(full.values()),
                "early_stop_rate": FLAGS.early_stop_rate,
                "expected_candidate_seconds_full": expected,
                "candidates_per_hour": 3600 / expected,
                "compile_once_seconds": once,
                "programs_cost": programs,
            }
        )
    )
    return 0

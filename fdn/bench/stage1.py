"""``python -m fdn.bench stage1``: seconds per stage-1 step of one candidate at the search settings.

Search settings: agg 48, auxiliary cells, repeats 1, KD (0.3) and Polyak (0.9) on, Adam with clip and L2, on
synthetic cached encoder outputs of the right shapes for ``--crop`` (l1 at 1/4: 64x64 for 256). Times
``--steps`` calls of the compiled step after ``--warmup`` calls (median), and the AOT compile
(``jit(...).lower(...).compile()``) of the step. ``--scan`` also compiles and times the trainer's form: the
steps of an epoch as one ``lax.scan`` program (per-step time = program time / steps).

The table and JSON also give XLA's count of the compiled step's FLOPs and bytes (``fdn.bench._cost``: exact for
per-genotype programs; for universal ones it counts each of the decoder's loops once and understates the step,
so read a universal step's time against the per-genotype count of the same genotype) with the achieved
TFLOP/s and GB/s and, on a GPU it knows, their fraction of the datasheet peak; ``--precision`` computes in
bfloat16 (`fdn.candidate.precision`), and ``$FDN_DEPTHWISE_IMPL`` (recorded) picks the depthwise
kernels (`fdn.models.depthwise`).

``--official_repo=DIR`` (a checkout of DrSleep/nas-segm-pytorch; needs torch, skipped without it) also times the
official ``train_task0`` step on the same arrays (``fdn.bench._official_stage1``), its calls taking turns with
fdn's in blocks (``--official_block``) so that the load of a shared machine weighs on both alike, and prints
fdn / official.

The official PyTorch code needs 1.5-1.6 s per step for the default genotype at batch 16 on the 2-core CI CPU
(``shared/reference/official-baseline.md``). The last line printed is a JSON object.

    python -m fdn.bench stage1 --batch=16 --crop=256 --steps=20 \
        --genotype='[[7, [0, 0, 6, 3], [2, 1, 4, 2], [4, 1, 6, 1]], [[0, 0], [3, 2], [2, 0]]]'
"""

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from fdn import genotype as G
from fdn import host_memory
from fdn.bench import _official_stage1 as official
from fdn.bench import _profile
from fdn.bench._cost import achieved, peak_of, program_cost
from fdn.bench._timing import time_calls
from fdn.candidate import default_config, flat, steps
from fdn.candidate.compiled import stage1_optimiser
from fdn.candidate.precision import FLOAT32, PRECISIONS
from fdn.candidate.programs import (
    AUTO,
    KINDS,
    UNIVERSAL,
    config_stage1_work,
    make_programs,
    ordinary_abstract,
    resolve_kind,
)
from fdn.models import depthwise
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.init import draw_variables
from fdn.models.segmenter import count_params

SEARCH_A = "[[7, [0, 0, 6, 3], [2, 1, 4, 2], [4, 1, 6, 1]], [[0, 0], [3, 2], [2, 0]]]"
TAP_STRIDES = (4, 8, 16, 32)
TAP_CHANNELS = (24, 32, 96, 320)

FLAGS = flags.FlagValues()
flags.DEFINE_string("genotype", SEARCH_A, "genotype to time", flag_values=FLAGS)
flags.DEFINE_integer("batch", 16, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("crop", 256, "crop side the cached features come from", lower_bound=32, flag_values=FLAGS)
flags.DEFINE_integer("steps", 20, "timed steps", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("warmup", 2, "untimed steps after compiling", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 21, "classes", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("scan", False, "also time the lax.scan epoch program", flag_values=FLAGS)
flags.DEFINE_enum(
    "programs",
    AUTO,
    list(KINDS),
    "decoder program: one for every genotype, compiled per genotype, or 'auto': what a search at the paper's "
    "stage-1 settings would use on this platform (fdn.candidate.programs.resolve_kind)",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "precision", FLOAT32, list(PRECISIONS), "activations' dtype (fdn.candidate.precision)", flag_values=FLAGS
)
flags.DEFINE_string(
    "profile_dir",
    "",
    "trace --profile_steps more steps with jax.profiler into this folder (kept, with the step's optimised HLO) "
    "and print where the time went (fdn.bench._profile)",
    flag_values=FLAGS,
)
flags.DEFINE_integer("profile_steps", 3, "steps traced with --profile_dir", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string(
    "official_repo", "", "checkout of DrSleep/nas-segm-pytorch: also time its step, in turns", flag_values=FLAGS
)
flags.DEFINE_integer(
    "official_block",
    5,
    "with --official_repo: timed calls in a row per turn, each turn after one untimed call (1: strict alternation; "
    "see time_alternately)",
    lower_bound=1,
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "official_threads",
    2,
    "torch threads for the official step (2 as in official-baseline.md; on an oversubscribed CPU 1 ran 3-4x faster)",
    lower_bound=1,
    flag_values=FLAGS,
)


def tap_size(crop: int, stride: int) -> int:
    """Side of an encoder tap for a crop (PyTorch padding: each stride-2 conv gives ceil(n / 2))."""
    n = crop
    for _ in range(int(np.log2(stride))):
        n = (n + 1) // 2
    return n


def synthetic_features(rng, n: int, crop: int, dtype=np.float32):
    return [
        jnp.asarray(rng.normal(size=(n, tap_size(crop, s), tap_size(crop, s), c)).astype(dtype))
        for s, c in zip(TAP_STRIDES, TAP_CHANNELS)
    ]


def synthetic_labels(rng, n: int, size: int, num_classes: int):
    labels = rng.integers(0, num_classes, (n, size, size)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.05] = 255
    return jnp.asarray(labels)


def time_alternately(runs, steps: int, warmup: int, block: int = 1) -> list[list[float]]:
    """Seconds of each ``(fn, args)`` run's ``steps`` timed calls, after ``warmup`` calls each; the runs take turns
    in blocks of ``block`` timed calls, so a load that changes during the measurement weighs on all of them alike.

    With ``block > 1`` each block starts with one untimed call: a step then follows a step of its own, as in
    training (a stage is a loop of steps), not the other run's. That matters on VMs that report free memory to
    the hypervisor (Linux free page reporting; this project's CI VMs): memory freed and left idle ~2 s is handed
    back, and the next step faults it in again at the host. fdn's step frees its 1.8 GB temporary arena after each
    call, so it was timed 1.13 s after its own step, 1.17 s after 1 s of sleep, 2.7 s after 2 s (search_b, 2-core CPU).
    """
    for fn, args in runs:
        time_calls(fn, repeats=0, warmup=warmup, args=args)
    times = [[] for _ in runs]
    while len(times[0]) < steps:
        n = min(block, steps - len(times[0]))
        for out, (fn, args) in zip(times, runs):
            out.extend(time_calls(fn, repeats=n, warmup=1 if block > 1 else 0, args=args).times)
    return times


def _programs_kind() -> str:
    """``--programs`` with 'auto' resolved for the paper's stage 1 (the default candidate config) on this platform."""
    return resolve_kind(FLAGS.programs, config_stage1_work(default_config().stage1), jax.default_backend())


def print_table(rows):
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _summary(genotype, l1, ordinary, lower_compile, times, load_before):
    """The table rows and JSON result of fdn's own step."""
    b, median = FLAGS.batch, statistics.median(times)
    lower_s, compile_s = lower_compile
    rows = [
        ("genotype", str(genotype)),
        (
            "programs / precision / depthwise",
            f"{_programs_kind()} / {FLAGS.precision} / {depthwise.impl_on(jax.default_backend())}",
        ),
        ("batch / crop / l1", f"{b} / {FLAGS.crop} / {l1}x{l1}"),
        (
            "decoder params (total / without aux)",
            f"{count_params(ordinary[N.PARAMS])} / {count_params(ordinary[N.PARAMS], False)}",
        ),
        ("trace+lower s", f"{lower_s:.2f}"),
        ("compile s", f"{compile_s:.2f}"),
        ("step s (median)", f"{median:.4f}"),
        ("step s (min / max)", f"{min(times):.4f} / {max(times):.4f}"),
        ("images/s", f"{b / median:.1f}"),
        ("load average (1 min) before / after", f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"),
        ("host huge pages", host_memory.state()),
    ]
    result = {
        "bench": "stage1",
        "genotype": genotype.to_list(),
        "programs": _programs_kind(),
        "precision": FLAGS.precision,
        "depthwise": depthwise.impl_on(jax.default_backend()),
        "batch": b,
        "crop": FLAGS.crop,
        "seconds_per_step": median,
        "compile_seconds": compile_s,
        "lower_seconds": lower_s,
        "device": jax.devices()[0].device_kind,
        "load_average": os.getloadavg()[0],
        "host_hugepages": host_memory.state(),
    }
    return rows, result


def _add_cost(rows, result, compiled, seconds_per_step) -> None:
    """XLA's FLOPs and bytes of one compiled step, the rates the measured step achieves, and their fraction of
    the device's datasheet peak (None where the device is not in ``fdn.bench._cost.DEVICE_PEAKS``)."""
    cost = program_cost(compiled)
    rates = achieved(cost, seconds_per_step, peak_of(jax.devices()[0].device_kind))

    def fmt(value, scale=1.0, spec=".2f"):
        return "-" if value is None else format(value / scale, spec)

    counted = " (loop bodies once: understated)" if _programs_kind() == UNIVERSAL else ""
    rows += [
        (f"XLA GFLOP / GB per step{counted}", f"{fmt(cost['flops'], 1e9)} / {fmt(cost['bytes'], 1e9)}"),
        ("achieved TFLOP/s / GB/s", f"{fmt(rates['tflops'], spec='.3f')} / {fmt(rates['gbps'], spec='.1f')}"),
        (
            "of peak: f32 / bf16 FLOP/s, HBM",
            " / ".join(fmt(rates[k], spec=".1%") for k in ("of_f32_peak", "of_bf16_peak", "of_hbm_peak")),
        ),
    ]
    result.update(flops_per_step=cost["flops"], bytes_per_step=cost["bytes"], **rates)


def _add_profile(rows_out: list, result, compiled, run) -> None:
    """``--profile_dir``: trace ``run`` and report the time per kind of work (``fdn.bench._profile``)."""
    directory = FLAGS.profile_dir
    os.makedirs(directory, exist_ok=True)
    hlo = compiled.as_text()
    with open(os.path.join(directory, "step.hlo.txt"), "w") as f:
        f.write(hlo)
    _profile.trace(run, FLAGS.profile_steps, directory)
    instructions = _profile.hlo_instructions(hlo)
    seconds = _profile.op_seconds(directory, instructions, FLAGS.profile_steps)
    rows_out.extend(_profile.format_profile(seconds, instructions))
    result["profile_ms"] = {k: v * 1e3 for k, v in _profile.by_category(seconds, instructions).items()}


def _add_official(rows, result, median, official_times, official_params) -> None:
    """The official step's rows and JSON keys, and fdn's ratio to it."""
    off = statistics.median(official_times)
    rows += [
        ("official params", str(official_params)),
        ("official step s (median)", f"{off:.4f}"),
        ("official step s (min / max)", f"{min(official_times):.4f} / {max(official_times):.4f}"),
        ("fdn / official", f"{median / off:.2f}"),
    ]
    result.update(official_seconds_per_step=off, ratio_to_official=median / off)


def _add_scan(rows, result, rng, fresh_state, parts, l1) -> None:
    """``--scan``: compile and time the trainer's form (an epoch's steps as one ``lax.scan`` program)."""
    predict, tx, flattener, cfg, plan = parts
    b, k = FLAGS.batch, FLAGS.num_classes
    n = b * max(FLAGS.steps, 1)
    cache_f = synthetic_features(rng, n, FLAGS.crop)
    cache_y = synthetic_labels(rng, n, l1, k)
    cache_t = jnp.asarray(rng.normal(size=(n, l1, l1, k)), jnp.float32)
    program = steps.make_stage1_program(predict, tx, flattener, cfg, num_examples=n, batch_size=b, epochs=1)
    args = lambda: (fresh_state(), jax.random.PRNGKey(0), cache_f, cache_y, cache_t, plan)  # noqa: E731
    t0 = time.perf_counter()
    scan_exe = jax.jit(program, donate_argnums=0).lower(*args()).compile()
    t1 = time.perf_counter()
    med = time_calls(lambda *a: scan_exe(*a)[1], repeats=2, warmup=1, args=args).median
    rows += [("scan program compile s", f"{t1 - t0:.2f}"), ("scan step s", f"{med / FLAGS.steps:.4f}")]
    result.update(scan_compile_seconds=t1 - t0, scan_seconds_per_step=med / FLAGS.steps)


def main(argv):
    FLAGS(argv)
    genotype = G.parse(FLAGS.genotype)
    if FLAGS.official_repo:  # a bad path fails before the compile, not after it
        official.check_repo(FLAGS.official_repo)
    settings = DecoderSettings.search(FLAGS.num_classes)
    cfg = default_config().stage1
    rng = np.random.default_rng(0)
    b, k = FLAGS.batch, FLAGS.num_classes
    feats = synthetic_features(rng, b, FLAGS.crop)
    l1 = feats[0].shape[1]
    labels = synthetic_labels(rng, b, l1, k)
    teacher = jnp.asarray(rng.normal(size=(b, l1, l1, k)).astype(np.float32))

    programs = make_programs(_programs_kind(), settings, precision=FLAGS.precision)
    abstract = programs.abstract(genotype, [f.shape for f in feats])
    ordinary = ordinary_abstract(genotype, settings, [f.shape for f in feats])
    variables = programs.to_program(draw_variables(ordinary, 0), genotype)
    flattener = flat.Flattener(abstract[N.PARAMS])
    tx = stage1_optimiser(cfg, abstract[N.PARAMS], flattener, genotype)
    predict, plan = programs.stage1_predict(genotype), programs.plan(genotype)

    def fresh_state():
        return steps.init_state(
            tx, flattener.flatten(variables[N.PARAMS]), jax.tree.map(jnp.array, variables[N.BATCH_STATS])
        )

    def step(state, f, y, t, d):
        state, metrics = steps.stage1_step(predict, tx, flattener, cfg, state, f, y, t, d)
        return state, metrics["loss"]

    state = fresh_state()
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=0).lower(state, feats, labels, teacher, plan)
    t1 = time.perf_counter()
    exe = lowered.compile()
    t2 = time.perf_counter()
    holder = {"state": state}

    def call(f, y, t):
        holder["state"], loss = exe(holder["state"], f, y, t, plan)
        return loss

    runs = [(call, lambda: (feats, labels, teacher))]
    if FLAGS.official_repo and official.torch_available():
        official_step, official_params = official.make_step(
            FLAGS.official_repo, genotype, settings, cfg, feats, labels, teacher, FLAGS.official_threads
        )
        runs.append((official_step, tuple))
    elif FLAGS.official_repo:
        print("official step: skipped (torch is not installed)")
    load_before = os.getloadavg()[0]
    all_times = time_alternately(runs, FLAGS.steps, FLAGS.warmup, FLAGS.official_block)
    times = all_times[0]
    median = statistics.median(times)
    rows, result = _summary(genotype, l1, ordinary, (t1 - t0, t2 - t1), times, load_before)
    _add_cost(rows, result, exe, median)
    if len(all_times) > 1:
        _add_official(rows, result, median, all_times[1], official_params)
    if FLAGS.scan:
        _add_scan(rows, result, rng, fresh_state, (predict, tx, flattener, cfg, plan), l1)
    profile_lines = []
    if FLAGS.profile_dir:
        _add_profile(profile_lines, result, exe, lambda: jax.block_until_ready(call(feats, labels, teacher)))
    print_table(rows)
    print("\n".join(profile_lines))
    print(json.dumps(result))
    return 0

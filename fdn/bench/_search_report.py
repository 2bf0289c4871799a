"""From the trainer's per-stage seconds to ``fdn.bench search``'s table: phases, full-scale estimates,
candidates per hour, and what each compiled program achieves against the device's peak.

Per candidate the two ``StageResult.seconds`` are split into phases (``phase_seconds``). The steady state is
the mean over candidates 2..K (all of them when K = 1): the first one pays the compiles and the input
pipeline's start-up. A full-scale figure multiplies each phase by how much longer that phase is in the
preset than in the run (``Schedule.ratio``): training by steps, evaluation by meta-val batches, the input
wait by stage-2 steps; host set-up ("other") is per candidate and does not scale. Compile is paid once per
search with universal programs and by every new genotype with per-genotype ones.
"""

from __future__ import annotations

import statistics

from fdn.bench._cost import achieved, program_cost

# phase -> (stage it belongs to, Schedule phase it scales with; None = per candidate)
PHASES = {
    "stage-1 train": (1, "stage1"),
    "stage-1 eval": (1, "val"),
    "stage-1 other": (1, None),
    "stage-2 train": (2, "stage2"),
    "input wait": (2, "stage2"),
    "stage-2 eval": (2, "val"),
    "stage-2 other": (2, None),
    "compile stage 1": (1, None),
    "compile stage 2": (2, None),
}


def phase_seconds(r1_seconds: dict, r2_seconds: dict) -> dict:
    """One candidate's seconds per phase (``PHASES``) from its two stages' ``seconds``; they add up to the total.

    Stage-2 train excludes the time spent waiting for input batches, which is its own phase.
    """
    wait = float(r2_seconds.get("input_wait", 0.0))
    out = {
        "stage-1 train": r1_seconds["train"],
        "stage-1 eval": r1_seconds["eval"],
        "stage-2 train": r2_seconds["train"] - wait,
        "input wait": wait,
        "stage-2 eval": r2_seconds["eval"],
        "compile stage 1": r1_seconds["compile"],
        "compile stage 2": r2_seconds["compile"],
    }
    for stage, s in ((1, r1_seconds), (2, r2_seconds)):
        out[f"stage-{stage} other"] = max(0.0, s["total"] - s["compile"] - s["train"] - s["eval"])
    return {k: float(out[k]) for k in PHASES}


def steady_state(per_candidate: list[dict]) -> dict:
    """Mean seconds per phase over candidates 2..K (all when K = 1)."""
    rows = per_candidate[1:] or per_candidate
    return {k: statistics.fmean(r[k] for r in rows) for k in PHASES}


def full_scale(phases: dict, schedule, *, compile_per_candidate: dict) -> dict:
    """The phases of one candidate at the preset's full length; ``compile_per_candidate`` replaces compile."""
    out = {}
    for name, (_, scales_with) in PHASES.items():
        if name.startswith("compile"):
            out[name] = compile_per_candidate[name]
        else:
            out[name] = phases[name] * (schedule.ratio(scales_with) if scales_with else 1.0)
    return out


def candidate_seconds(phases: dict, early_stop_rate: float = 0.0) -> float:
    """Expected seconds of a candidate when ``early_stop_rate`` of them stop after stage 1."""
    stage1 = sum(v for k, v in phases.items() if PHASES[k][0] == 1)
    stage2 = sum(v for k, v in phases.items() if PHASES[k][0] == 2)
    return stage1 + (1.0 - early_stop_rate) * stage2


def program_rows(compiled: dict, phases: dict, schedule, peak) -> dict:
    """Per compiled program ('stage1', 'eval', 'stage2'): XLA's FLOPs and bytes per step and the achieved rates.

    Step times: stage 1 = its train phase / steps; eval = stage 1's evaluation (decoder only, on cached
    features: exactly this program) / meta-val batches; stage 2 = its train phase including the input wait
    (the throughput the search gets) / steps. With per-genotype programs the table holds one program per
    genotype; the row shows the last one's cost against the mean step time.
    """
    per_step = {
        "stage1": phases["stage-1 train"] / schedule.stage1_steps,
        "eval": phases["stage-1 eval"] / schedule.val_batches,
        "stage2": (phases["stage-2 train"] + phases["input wait"]) / schedule.stage2_steps,
    }
    rows = {}
    for (_, what), exe in sorted(compiled.items(), key=lambda kv: list(per_step).index(kv[0][1])):
        cost = program_cost(exe)
        rows[what] = {**cost, "seconds_per_step": per_step[what], **achieved(cost, per_step[what], peak)}
    return rows


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(phases: dict, full: dict, schedule, *, early_stop_rate: float) -> list[str]:
    """phase | seconds (run) | share | seconds (full length) | share, then per-candidate totals."""
    run_total, full_total = sum(phases.values()), sum(full.values())
    lines = [f"{'phase':<16} {'run s':>9} {'share':>6} {'full s':>9} {'share':>6}"]
    for name in PHASES:
        lines.append(
            f"{name:<16} {phases[name]:>9.3f} {phases[name] / run_total:>6.1%} "
            f"{full[name]:>9.2f} {full[name] / full_total:>6.1%}"
        )
    expected = candidate_seconds(full, early_stop_rate)
    lines += [
        f"{'candidate':<16} {run_total:>9.3f} {'':>6} {full_total:>9.2f}",
        (
            f"steps run / full: stage 1 {schedule.stage1_steps} / {schedule.full_stage1_steps}, stage 2 "
            f"{schedule.stage2_steps} / {schedule.full_stage2_steps}, meta-val batches {schedule.val_batches} / "
            f"{schedule.full_val_batches}"
        ),
        (
            f"full candidate: {full_total:.1f} s; with {early_stop_rate:.0%} stopped after stage 1: "
            f"{expected:.1f} s = {3600 / expected:.1f} candidates/hour"
        ),
    ]
    return lines


def format_programs(rows: dict) -> list[str]:
    lines = [
        (
            f"{'program':<8} {'GFLOP/step':>11} {'GB/step':>9} {'s/step':>9} {'TFLOP/s':>8} {'GB/s':>8} "
            f"{'%f32':>6} {'%bf16':>6} {'%HBM':>6}"
        )
    ]
    for what, r in rows.items():
        pct = [
            _fmt(r[k] * 100 if r[k] is not None else None, ".1f")
            for k in ("of_f32_peak", "of_bf16_peak", "of_hbm_peak")
        ]
        lines.append(
            f"{what:<8} {_fmt(r['flops'] and r['flops'] / 1e9, '.2f'):>11} "
            f"{_fmt(r['bytes'] and r['bytes'] / 1e9, '.3f'):>9} {r['seconds_per_step']:>9.4f} "
            f"{_fmt(r['tflops'], '.3f'):>8} {_fmt(r['gbps'], '.1f'):>8} {pct[0]:>6} {pct[1]:>6} {pct[2]:>6}"
        )
    return lines

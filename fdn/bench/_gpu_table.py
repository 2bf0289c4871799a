"""``launch/gpu_bench.sh``'s results as Markdown ready for the README, judged against issue #12's GPU bars.

A GPU is lent for minutes, rarely; whoever gets one should paste figures, not assemble them from six logs. This
reads the run's ``results.jsonl`` (one line per step: the bench's own JSON line, or that it was skipped or
failed) and ``versions.txt`` and prints: the device, versions and commit; the two bars (a paper-setting
candidate <= 20 s with the official 38% early stop; the stage-1 step at batch 64 <= 40 ms) with what was
measured; the candidate's phases at full length; XLA's count per compiled program against the device's peaks;
the stage-1 variants side by side (per-genotype or universal programs, cuDNN or fdn's shifted depthwise
kernels, bfloat16, CUDA-graph conditionals), which is the measurement the per-platform choice of
``candidate.programs='auto'`` waits for; and which steps did not run.

    python -m fdn.bench._gpu_table OUTDIR        # gpu_bench.sh runs it last, into OUTDIR/gpu_table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CANDIDATE_BAR_SECONDS = 20.0  # issue #12: a full paper-setting candidate on an H100/H200
STEP_BAR_MS = 40.0  # issue #12: the stage-1 step at the paper's batch 64
PHASE_ORDER = ("stage-1 train", "stage-1 eval", "stage-2 train", "input wait", "stage-2 eval")


def load(outdir: Path) -> tuple[dict, str]:
    """``{step name: its JSON result, or {'skipped': True} / {'exit': rc}}`` and the versions' text."""
    path = outdir / "results.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `bash launch/gpu_bench.sh {outdir}` first")
    steps = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            steps[entry["step"]] = entry.get("result") or {k: v for k, v in entry.items() if k != "step"}
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number} is not a line gpu_bench.sh writes ({err}); rerun the bench") from err
    versions = outdir / "versions.txt"
    return steps, versions.read_text().strip() if versions.exists() else "(no versions.txt)"


def _ran(result: dict) -> bool:
    return "bench" in result


def _pct(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def _table(header: tuple, rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _verdict(value: float, bar: float) -> str:
    return "**met**" if value <= bar else "not met"


def bars(steps: dict) -> list[str]:
    """The two acceptance bars with what this run measured (the search's own programs and each stage-1 variant)."""
    rows = []
    search = steps.get("search_paper", {})
    if _ran(search):
        # the bars are the paper's setting; a smoke run (tiny preset) is shown but not judged
        judge = _verdict if search["preset"] == "paper" else (lambda *_: f"(preset {search['preset']}: not judged)")
        total = search["expected_candidate_seconds_full"]
        measured = f"{total:.1f} s ({search['candidates_per_hour']:.0f} per GPU-hour; {search['programs']} programs)"
        rows.append(
            (
                "a paper-setting candidate (38% stop after stage 1)",
                f"<= {CANDIDATE_BAR_SECONDS:.0f} s",
                measured,
                judge(total, CANDIDATE_BAR_SECONDS),
            )
        )
        step = search["programs_cost"]["stage1"]["seconds_per_step"] * 1e3
        rows.append(
            (
                f"stage-1 step in the search ({search['stage1']})",
                f"<= {STEP_BAR_MS:.0f} ms",
                f"{step:.1f} ms",
                judge(step, STEP_BAR_MS),
            )
        )
    for name, result in steps.items():
        if name.startswith("stage1") and _ran(result) and result["batch"] == 64:
            ms = result["seconds_per_step"] * 1e3
            label = f"stage-1 step, batch 64, {_variant(result)}"
            rows.append((label, f"<= {STEP_BAR_MS:.0f} ms", f"{ms:.1f} ms", _verdict(ms, STEP_BAR_MS)))
    if not rows:
        return ["(no bar measured: every step was skipped or failed; see the list at the end)"]
    return _table(("what", "bar", "measured", "verdict"), rows)


def _why_not(result: dict) -> str:
    return "skipped (budget)" if result.get("skipped") else f"exit {result.get('exit')} (see its log)"


def _variant(result: dict) -> str:
    return f"{result['programs']}, {result['precision']}, depthwise {result['depthwise']}"


def phases(search: dict) -> list[str]:
    """The candidate's seconds per phase, as run (scaled) and at the preset's full length."""
    full, run = search["phases_full"], search["phases"]
    names = [*PHASE_ORDER, *(k for k in full if k not in PHASE_ORDER)]
    rows = [(k, f"{run[k]:.2f}", f"{full[k]:.2f}") for k in names]
    rows.append(("**a candidate, expected (38% stop)**", "", f"**{search['expected_candidate_seconds_full']:.1f}**"))
    head = f"phases of a candidate, s (steps_scale {search['steps_scale']}; compile once: "
    head += f"{search['compile_once_seconds']:.1f} s)"
    return [head, "", *_table(("phase", "as run", "full length"), rows)]


def programs(search: dict) -> list[str]:
    """XLA's FLOPs and bytes per step of each compiled program, the achieved rates and their share of the peak."""
    rows = [
        (
            name,
            f"{c['flops'] / 1e9:.2f}",
            f"{c['bytes'] / 1e9:.2f}",
            f"{c['seconds_per_step'] * 1e3:.1f}",
            f"{c['tflops']:.2f}",
            f"{c['gbps']:.0f}",
            _pct(c["of_hbm_peak"]),
            _pct(c["of_f32_peak"]),
        )
        for name, c in search["programs_cost"].items()
    ]
    header = ("program", "GFLOP / step", "GB / step", "ms / step", "TFLOP/s", "GB/s", "of HBM peak", "of f32 peak")
    return _table(header, rows)


def variants(steps: dict) -> list[str]:
    """The stage-1 step's variants side by side: the figures that decide the GPU's programs and kernels."""
    rows = []
    for name, r in steps.items():
        if name.startswith("stage1") and _ran(r):
            rows.append(
                (
                    name,
                    _variant(r),
                    f"{r['batch']} x {r['crop']}",
                    f"{r['seconds_per_step'] * 1e3:.1f}",
                    f"{r['compile_seconds']:.1f}",
                    f"{r['gbps']:.0f}",
                    _pct(r["of_hbm_peak"]),
                )
            )
    header = ("step", "variant", "batch x crop", "ms / step", "compile s", "GB/s", "of HBM peak")
    return _table(header, rows) if rows else ["(no stage-1 variant ran)"]


def markdown(steps: dict, versions: str) -> str:
    """The whole report: machine, bars, phases, programs, variants, and the steps that did not run."""
    search = steps.get("search_paper", {})
    device = search.get("device_kind") or next((r["device"] for r in steps.values() if _ran(r)), "unknown")
    out = [f"**GPU benchmark** (`bash launch/gpu_bench.sh`) on {device}", "", "```", versions, "```", ""]
    out += ["issue #12's bars:", "", *bars(steps), ""]
    if _ran(search):
        out += [*phases(search), "", "per compiled program (XLA's count; universal programs understate a step):", ""]
        out += [*programs(search), ""]
    out += ["stage-1 step variants:", "", *variants(steps), ""]
    missing = [f"{name}: {_why_not(r)}" for name, r in steps.items() if not _ran(r)]
    out += ["did not run: " + ("; ".join(missing) if missing else "none")]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m fdn.bench._gpu_table OUTDIR", file=sys.stderr)
        return 2
    try:
        steps, versions = load(Path(argv[1]))
    except (FileNotFoundError, ValueError) as err:
        print(f"fdn.bench._gpu_table: error: {err}", file=sys.stderr)
        return 2
    print(markdown(steps, versions), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

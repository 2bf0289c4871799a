"""Runs side by side against one budget (``python -m fdn.leaderboard BUDGETED --compare QUALITY_ONLY``).

Whether a budgeted search did its job is a question about its candidates against the target, asked of the
quality-only run of the same seed too: per quarter of each run, the mean quality, the mean and median measure,
the share of candidates at or under the target, and the best quality among those (issue #15's bar: most of the
last quarter under the target). Reward means alone cannot say it: a budgeted reward is quality x a budget term.

A run that did not log the budget's measure (the quality-only run logs ``params_without_aux``) is priced here:
for latency with the budgeted run's own ``latency_model.json`` (an estimate is a pure function of the genotype,
so both runs are priced with the same numbers); runs that cannot be priced show ``-``. The budget is the first
compared run's that states a target (`measure.target_of`). ``budget.png`` plots quality against the measure for
every run, each with its Pareto front, and the target.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from fdn import genotype as G
from fdn.search import budget
from fdn.search.report import measure

FIGURE = "budget.png"


class Budget(NamedTuple):
    name: str  # the measure, as records name it (``latency_ms``, ...)
    target: float
    workdir: Path  # the run that states it (and holds its latency model)


def find(runs: dict[str, tuple[Path, list[dict]]]) -> Budget | None:
    """The budget of the first run (``{label: (workdir, records)}``) whose records state a target."""
    for workdir, records in runs.values():
        target = measure.target_of(records)
        if target:
            return Budget(measure.measure_name(records), target, Path(workdir))
    return None


def pricer(b: Budget) -> Callable[[dict], float | None]:
    """``record -> measure``: the record's own value when it logged the budget's measure, else for latency the
    budgeted run's latency model's estimate of its genotype, else None."""
    model = None
    if b.name == budget.MEASURE_NAMES[budget.LATENCY]:
        from fdn.latency import table

        path = b.workdir / table.MODEL_FILENAME
        if path.exists():
            model = table.LatencyModel.from_json(path.read_text())

    def price(record: dict) -> float | None:
        name, value = measure.measure_of(record)
        if name == b.name:
            return value
        return None if model is None else model.estimate_ms(G.parse(record["genotype"]))

    return price


def quarters(records: list[dict], price: Callable[[dict], float | None], target: float) -> list[dict]:
    """Four rows (the run split in order, as `leaderboard.compare_table`) and one for the whole run: candidates,
    mean quality, mean and median measure, share at or under the target and the best quality there (None where
    nothing is priced or nothing is under)."""
    parts = np.array_split(np.arange(len(records)), 4) if len(records) >= 4 else [np.arange(len(records))] * 4
    rows = []
    for label, idx in [*zip(("Q1", "Q2", "Q3", "Q4"), parts), ("all", np.arange(len(records)))]:
        rs = [records[i] for i in idx]
        quality = np.array([measure.quality_of(r) for r in rs])
        values = [price(r) for r in rs]
        priced = [(v, q) for v, q in zip(values, quality) if v is not None]
        under = [q for v, q in priced if v <= target]
        m = np.array([v for v, _ in priced])
        rows.append(
            {
                "quarter": label,
                "candidates": len(rs),
                "quality": float(quality.mean()) if len(rs) else None,
                "mean": float(m.mean()) if len(m) else None,
                "median": float(np.median(m)) if len(m) else None,
                "under": len(under) / len(priced) if priced else None,
                "n_under": len(under),
                "best_under": max(under) if under else None,
            }
        )
    return rows


def table(runs: dict[str, tuple[Path, list[dict]]], b: Budget) -> str:
    """The per-quarter table of every run against the budget ``b`` (markdown)."""
    price = pricer(b)
    t = f"{b.target:g}"

    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    how = "its latency model" if b.name == budget.MEASURE_NAMES[budget.LATENCY] else "nothing: shown as -"
    lines = [
        f"budget: {b.name} <= {t} (stated by {b.workdir.name}; runs that did not log it priced by {how})",
        f"| run | quarter | candidates | mean quality | mean {b.name} | median {b.name} | under {t} | "
        f"best quality under {t} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, (_, records) in runs.items():
        for row in quarters(records, price, b.target):
            under = "-" if row["under"] is None else f"{row['n_under']} ({100 * row['under']:.0f}%)"
            lines.append(
                f"| {label} | {row['quarter']} | {row['candidates']} | {cell(row['quality'], '.4f')} | "
                f"{cell(row['mean'], '.3g')} | {cell(row['median'], '.3g')} | {under} | "
                f"{cell(row['best_under'], '.4f')} |"
            )
    return "\n".join(lines)


def plot(runs: dict[str, tuple[Path, list[dict]]], b: Budget, path: Path) -> None:
    """Quality against the budget's measure, one colour per run, each run's Pareto front as a step line, the
    target as a dashed line (Agg canvas, as every report figure)."""
    price = pricer(b)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for label, (_, records) in runs.items():
        pts = [
            measure.Point(int(r["index"]), v, measure.quality_of(r))
            for r in records
            if not r.get("failure") and (v := price(r)) is not None
        ]
        if not pts:
            continue
        (dots,) = ax.plot([p.measure for p in pts], [p.reward for p in pts], "o", ms=3.5, alpha=0.5, label=label)
        front = measure.pareto_front(pts)
        ax.step([p.measure for p in front], [p.reward for p in front], where="post", color=dots.get_color(), lw=1.3)
    ax.axvline(b.target, color="#c0392b", lw=1.0, ls="--", label=f"target {b.target:g}")
    ax.set_xlabel(f"{b.name} (lower is better)")
    ax.set_ylabel("quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)

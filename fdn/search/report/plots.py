"""The report's new figures: reward against cost with its Pareto front, and where each candidate's time went.

Matplotlib's Agg canvas only (no display, no pyplot state), as `fdn.search.leaderboard`'s figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fdn.search.report import measure

# The parts of a record's ``seconds``, in stacking order; ``other`` is what ``total`` has beyond them (the data
# iterators, the checkpoint, the log line).
TIME_PARTS = ("compile", "stage1", "stage2", "eval", "agent")
_COLORS = {
    "compile": "#c0392b",
    "stage1": "#2b5d8a",
    "stage2": "#5b9bd5",
    "eval": "#2d7a2d",
    "agent": "#8e6bb8",
    "other": "#bbbbbb",
}


def time_parts(records: list[dict]) -> dict[str, np.ndarray]:
    """Seconds per candidate for each part, ``other`` included (never negative)."""
    parts = {k: np.array([float(r["seconds"].get(k, 0.0)) for r in records]) for k in TIME_PARTS}
    total = np.array([float(r["seconds"].get("total", 0.0)) for r in records])
    parts["other"] = np.maximum(total - sum(parts.values()), 0.0)
    return parts


def plot_pareto(records: list[dict], path: Path) -> None:
    """Quality against the run's measure (`measure.quality_of`); the Pareto front joined by a step line and
    ringed, and in a budgeted run the target drawn as a vertical line."""
    pts = measure.points(records)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    if pts:
        m = np.array([p.measure for p in pts])
        rw = np.array([p.reward for p in pts])
        ax.scatter(m, rw, s=12, color="#2b5d8a", alpha=0.6, label="candidate")
        front = measure.pareto_front(pts)
        fm, fr = [p.measure for p in front], [p.reward for p in front]
        ax.step(fm, fr, where="post", color="#a05a00", lw=1.2)
        ax.scatter(fm, fr, s=48, facecolors="none", edgecolors="#a05a00", lw=1.5, label="Pareto front")
        for p in front:
            ax.annotate(str(p.index), (p.measure, p.reward), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.legend(fontsize=8, loc="lower right")
        target = measure.target_of(records)
        if target:
            ax.axvline(target, color="#c0392b", lw=1.0, ls="--", label="target")
            ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"{measure.measure_name(records)} (lower is better)")
    ax.set_ylabel(measure.value_name(records))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_time(records: list[dict], path: Path) -> None:
    """Each candidate's seconds stacked by part (compile, stage 1, stage 2, evaluation, agent, other)."""
    parts = time_parts(records)
    idx = np.array([r["index"] for r in records])
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    # An area per part rather than bars: a search of thousands of candidates draws as fast as one of ten.
    ax.stackplot(idx, *parts.values(), labels=list(parts), colors=[_COLORS[k] for k in parts], step="mid")
    ax.set_xlabel("candidate")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8, loc="upper right", ncol=len(parts))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)

"""What a design costs (its *measure*) and which designs no other beats on both quality and cost (the Pareto front).

A search record may carry ``"measure": {"name": "latency_ms", "value": 3.2}`` (budgeted rewards, issue #15
part 1: latency, parameters or FLOPs; lower is always better). Records without one (every search so far)
are measured by ``params_without_aux``, the deployed model's decoder-side parameter count, because that is
what the log has always recorded. One run mixes no measures: the first record's kind decides for all.
"""

from __future__ import annotations

from typing import NamedTuple

FALLBACK = "params_without_aux"


class Point(NamedTuple):
    """One candidate on the quality-vs-measure plane (``reward``: its quality, `quality_of`)."""

    index: int
    measure: float
    reward: float


def measure_of(record: dict) -> tuple[str, float | None]:
    """``(name, value)`` of a record's measure: its ``measure`` field if it has one, else its parameters."""
    m = record.get("measure")
    if isinstance(m, dict) and m.get("name"):
        value = m.get("value")
        return str(m["name"]), None if value is None else float(value)
    value = record.get(FALLBACK)
    return FALLBACK, None if value is None else float(value)


def target_of(records: list[dict]) -> float | None:
    """The budget's target as the run's first record states it (None for runs without one)."""
    m = records[0].get("measure") if records else None
    value = m.get("target") if isinstance(m, dict) else None
    return None if value is None else float(value)


def measure_name(records: list[dict]) -> str:
    """The run's measure: the one its first record names (``params_without_aux`` for an empty run)."""
    return measure_of(records[0])[0] if records else FALLBACK


def quality_of(record: dict) -> float:
    """What the front trades against the measure: the candidate's quality before any budget term
    (`fdn.search.budget`); records without a ``quality`` field (searches before it) have only their reward."""
    return float(record.get("quality", record["reward"]) or 0.0)


def value_name(records: list[dict]) -> str:
    """``quality`` for runs that log it, else ``reward`` (the same number for unbudgeted runs)."""
    return "quality" if any("quality" in r for r in records) else "reward"


def points(records: list[dict]) -> list[Point]:
    """The measured candidates (failed ones and ones without the run's measure are left out)."""
    name = measure_name(records)
    out = []
    for r in records:
        kind, value = measure_of(r)
        if kind == name and value is not None and not r.get("failure"):
            out.append(Point(int(r["index"]), value, quality_of(r)))
    return out


def pareto_front(pts: list[Point]) -> list[Point]:
    """The points no other point beats (lower or equal measure *and* higher or equal reward, one strictly),
    by increasing measure; of equal points the first candidate stands for them."""
    front: list[Point] = []
    for p in sorted(pts, key=lambda p: (p.measure, -p.reward, p.index)):
        if not front or p.reward > front[-1].reward:
            front.append(p)
    return front

"""The latency model: a per-piece latency table plus a correction fitted on a few whole models, cached on disk.

Why not time each candidate: the search trains candidates in the search form (agg 48, one repeat, aux heads)
through one universal program, so the deployed model is never compiled; compiling and timing it per candidate
would cost seconds and, worse, make the reward depend on timing noise. Instead, once per target and shape:

1. time every piece of `fdn.latency.parts` in the released form (`fdn.latency.pieces`), round-robin over a few
   rounds, keeping each piece's fastest call (a shared machine's load only ever adds time);
2. time ``calibration`` whole released models (fixed genotypes spread over the raw estimates) the same way;
3. fit ``measured = a + b * raw`` (``linear``) or ``log measured = a + b log raw`` (``loglinear``): the sum of
   isolated pieces misses XLA's fusion across pieces and per-call overheads, both roughly proportional.

The result is a small JSON file (`LatencyModel.to_json`), cached under a key of (target, device kind, shape,
settings, jax version) and copied into the search's workdir, so a resumed search prices candidates with the
same numbers, and every candidate's estimate is a pure function of its genotype.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from fdn import genotype as G
from fdn.latency import parts
from fdn.latency import pieces as P

FORMAT = 1
FITS = ("linear", "loglinear")
CALIBRATION_SEED = 20190615  # fixed: the calibration genotypes are part of the table, not of a search
MODEL_FILENAME = "latency_model.json"  # the copy in a search's workdir: the numbers its candidates were priced with


def key_str(key) -> str:
    return "/".join(str(k) for k in key)


def random_genotype(rng: np.random.Generator) -> G.Genotype:
    """A genotype drawn uniformly over every decision (the random agent's distribution)."""

    def pick(n):
        return int(rng.integers(n))

    pairs = tuple((pick(c), pick(c), pick(G.NUM_OPS), pick(G.NUM_OPS)) for c in G.CELL_POSITION_CHOICES)
    blocks = tuple((pick(c), pick(c)) for c in G.BLOCK_INPUT_CHOICES)
    return G.Genotype(pick(G.NUM_OPS), pairs, blocks)


def cache_key(shape: P.Shape, target: str, calibration: int, fit: str) -> dict:
    device = P.target_device(target)
    return {
        "format": FORMAT,
        "target": target,
        "platform": device.platform,
        "device_kind": device.device_kind,
        **dataclasses.asdict(shape),
        "calibration": calibration,
        "fit": fit,
        "jax": jax.__version__,
    }


def time_round_robin(compiled: dict, rounds: int, budget_s: float, log=None) -> dict:
    """``{name: ms}``: each callable timed ``rounds`` times, interleaved, keeping its fastest (`pieces.time_ms`)."""
    best = {k: float("inf") for k in compiled}
    for r in range(rounds):
        for k, c in compiled.items():
            best[k] = min(best[k], P.time_ms(c, budget_s=budget_s))
        if log:
            log(f"latency: timing round {r + 1}/{rounds} done")
    return best


def fit_correction(raw, measured, fit: str) -> dict:
    """Least-squares ``{'fit', 'a', 'b'}`` of measured on raw (both ms)."""
    raw, measured = np.asarray(raw, float), np.asarray(measured, float)
    if fit not in FITS:
        raise ValueError(f"unknown latency fit {fit!r}; choose from {', '.join(FITS)}")
    x, y = (np.log(raw), np.log(measured)) if fit == "loglinear" else (raw, measured)
    b, a = np.polyfit(x, y, 1) if len(set(x.tolist())) > 1 else (1.0, float(np.mean(y - x)))
    return {"fit": fit, "a": float(a), "b": float(b)}


def apply_correction(correction: dict, raw: float) -> float:
    a, b = correction["a"], correction["b"]
    if correction["fit"] == "loglinear":
        return float(np.exp(a + b * np.log(raw)))
    return float(a + b * raw)


@dataclasses.dataclass
class LatencyModel:
    """Per-piece milliseconds, the correction, and the whole models it was fitted on."""

    key: dict
    table: dict[str, float]
    correction: dict
    calibration: list[dict]  # [{'genotype', 'raw_ms', 'measured_ms'}]

    def raw_ms(self, genotype: G.Genotype) -> float:
        return float(sum(n * self.table[key_str(k)] for k, n in parts.count(genotype).items()))

    def estimate_ms(self, genotype: G.Genotype) -> float:
        return apply_correction(self.correction, self.raw_ms(genotype))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LatencyModel:
        return cls(**json.loads(text))


def calibration_genotypes(k: int, raw: Callable[[G.Genotype], float], pool: int = 400) -> list[G.Genotype]:
    """``k`` fixed genotypes spread evenly over the raw estimates of a seeded random pool (the fit sees the
    range the search will meet, not k similar designs)."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    gs = sorted((random_genotype(rng) for _ in range(pool)), key=raw)
    idx = np.linspace(0, len(gs) - 1, k).round().astype(int) if k > 1 else [len(gs) // 2]
    return [gs[i] for i in idx]


def measure_table(shape: P.Shape, target: str, *, rounds: int = 5, budget_s: float = 0.06, log=None) -> dict:
    """``{key_str: ms}`` for every piece (`parts.all_keys`) on ``target``."""
    device = P.target_device(target)
    levels = P.level_shapes(shape)
    compiled = {key_str(k): P.piece(k, shape, levels, device) for k in parts.all_keys()}
    return time_round_robin(compiled, rounds, budget_s, log)


def measure_models(genotypes, shape: P.Shape, target: str, *, rounds: int = 5, budget_s: float = 0.3, log=None):
    """Milliseconds of whole released models, in order (compiled first, then timed round-robin)."""
    device = P.target_device(target)
    compiled = {str(i): P.whole_model(g, shape, device) for i, g in enumerate(genotypes)}
    ms = time_round_robin(compiled, rounds, budget_s, log)
    return [ms[str(i)] for i in range(len(genotypes))]


def build(shape: P.Shape, target: str, calibration: int = 6, fit: str = "linear", log=None) -> LatencyModel:
    """Measures the table and the calibration models and fits the correction (about a minute at 256 px on
    a 2-core CPU)."""
    start = time.time()
    table = measure_table(shape, target, log=log)
    model = LatencyModel(cache_key(shape, target, calibration, fit), table, {"fit": fit, "a": 0.0, "b": 1.0}, [])
    gs = calibration_genotypes(calibration, model.raw_ms) if calibration else []
    measured = measure_models(gs, shape, target, log=log)
    model.calibration = [
        {"genotype": g.to_list(), "raw_ms": model.raw_ms(g), "measured_ms": m} for g, m in zip(gs, measured)
    ]
    if len(gs) >= 2:
        model.correction = fit_correction([c["raw_ms"] for c in model.calibration], measured, fit)
    if log:
        log(f"latency: table of {len(table)} pieces and {len(gs)} whole models in {time.time() - start:.0f} s")
    return model


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read(path: Path, key: dict) -> LatencyModel | None:
    try:
        model = LatencyModel.from_json(path.read_text())
    except (OSError, ValueError, TypeError):
        return None
    return model if model.key == key else None


def load_or_build(
    shape: P.Shape,
    target: str,
    *,
    workdir: Path | None = None,
    cache_dir: str = "",
    calibration: int = 6,
    fit: str = "linear",
    filename: str = MODEL_FILENAME,
    log=None,
) -> LatencyModel:
    """The workdir's model if it has one for this key (a resume), else the disk cache's, else a fresh one; the
    result is written to both, so the workdir always holds the numbers its candidates were priced with."""
    key = cache_key(shape, target, calibration, fit)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cached = Path(cache_dir).expanduser() / f"{digest}.json" if cache_dir else None
    own = Path(workdir) / filename if workdir else None
    for path in (own, cached):
        if path is not None and (model := _read(path, key)) is not None:
            if log:
                log(f"latency: using the latency model in {path}")
            break
    else:
        model = build(shape, target, calibration, fit, log)
        if cached is not None:
            _write(cached, model.to_json())
    if own is not None:
        _write(own, model.to_json())
    return model

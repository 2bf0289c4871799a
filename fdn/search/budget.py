"""Searching under a budget (issue #15 part 1): MnasNet's reward ``Q x (m / T) ** w`` on latency, size or FLOPs.

``Q`` is the quality the candidate scored (today's reward: the geometric mean of mIoU, mean accuracy and fwIoU),
``m`` the candidate's *measure* and ``T`` the target ``reward.target``; ``w`` is ``reward.w_under`` when
``m <= T`` and ``reward.w_over`` above it. The defaults (-0.07 on both sides) are MnasNet's soft constraint
(doubling the measure is worth about 5% of quality); ``w_under=0, w_over=-1`` is its hard variant (no gain for
being smaller, a steep loss for being larger).

Measures, all of the *released* form (agg 64, two repeats, no aux heads, BN folded) at ``reward.input_size``:

* ``latency``: milliseconds, estimated by `fdn.latency.table` (measured once per target and shape at start-up,
  cached, copied into the workdir): a function of the genotype only, so rewards never depend on timing noise;
* ``params``: the parameter count, exact (`fdn.latency.exact`);
* ``flops``: XLA's FLOP count of one forward at the input size, exact (`fdn.latency.exact`).

With ``objective=quality`` (the default) the reward is the quality, as before, and the measure logged is the
search-form ``params_without_aux`` the log has always had (so a plain search pays nothing for this module).
Every record gains ``quality`` and ``measure`` (``{'name', 'value'}``, lower is better: what
`fdn.search.report.measure` plots).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from fdn.errors import UserError
from fdn.models import names as N

QUALITY, LATENCY, FLOPS = "quality", "latency", "flops"
PARAMETERS = N.PARAMS  # the objective is spelled as the parameter collection it counts
OBJECTIVES = (QUALITY, LATENCY, PARAMETERS, FLOPS)
# The name a record's measure carries, per objective (quality logs the search-form count, as always).
MEASURE_NAMES = {QUALITY: "params_without_aux", LATENCY: "latency_ms", PARAMETERS: "released_params", FLOPS: "flops"}


# Random designs (uniform over every decision: the random agent's and a fresh PPO policy's distribution) a latency
# search describes its target against at start-up.
RANDOM_DESIGNS = 1000


class BudgetConfigError(UserError, ValueError):
    """A ``reward.*`` setting that cannot work."""


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.objective = QUALITY  # quality | latency | params | flops
    c.target = 0.0  # T, in the measure's unit: ms, parameters or FLOPs (> 0 unless objective=quality)
    c.w_under = -0.07  # exponent when the measure is at or under the target (MnasNet soft: -0.07; hard: 0)
    c.w_over = -0.07  # exponent over the target (MnasNet soft: -0.07; hard: -1)
    c.input_size = 256  # square input of the deployed model the measure is taken at
    c.batch = 1
    c.device = "device"  # latency target: 'device' (the search's own JAX device) or 'cpu' (XLA:CPU, StableHLO)
    c.calibration = 6  # whole released models timed at start-up to fit the latency correction
    c.fit = "linear"  # latency correction: linear | loglinear (fdn.latency.table)
    c.cache_dir = "~/.cache/fdn/latency"  # where measured latency models are kept between searches ('' = none)
    return c


def budgeted_reward(quality: float, measure: float | None, target: float, w_under: float, w_over: float) -> float:
    """``quality * (measure / target) ** w`` (``w`` by the side of the target); the quality itself when there is
    no measure or the quality is not positive (a failed candidate stays at 0)."""
    if measure is None or not quality > 0:
        return float(quality)
    w = w_under if measure <= target else w_over
    return float(quality * (measure / target) ** w)


def target_share(measure, target: float, n: int = RANDOM_DESIGNS, seed: int = 0) -> tuple[float, tuple]:
    """``(share, (p10, p50, p90))``: the share of ``n`` seeded random genotypes whose ``measure`` is at or under
    ``target``, and their 10th / 50th / 90th percentiles. Why: a target few random designs meet leaves the
    controller almost nothing to learn from (a demo at 15 ms, met by 2.7% of them, found 1 design in 10 under it),
    one most meet constrains nothing; a fair first target is met by ~30-50%."""
    from fdn.latency import table

    rng = np.random.default_rng(seed)
    values = np.array([measure(table.random_genotype(rng)) for _ in range(n)])
    return float(np.mean(values <= target)), tuple(float(p) for p in np.percentile(values, [10, 50, 90]))


def check(cfg) -> None:
    if cfg.objective not in OBJECTIVES:
        raise BudgetConfigError(
            f"reward.objective={cfg.objective!r} is not one of {', '.join(OBJECTIVES)}; e.g. "
            "--config.reward.objective=latency --config.reward.target=30"
        )
    if cfg.objective != QUALITY and not cfg.target > 0:
        unit = {LATENCY: "milliseconds", PARAMETERS: "parameters", FLOPS: "FLOPs"}[cfg.objective]
        raise BudgetConfigError(
            f"reward.objective={cfg.objective} needs reward.target > 0 (in {unit}), got {cfg.target}; e.g. "
            f"--config.reward.target=..."
        )
    if cfg.objective == LATENCY and cfg.device not in ("device", "cpu"):
        raise BudgetConfigError(f"reward.device={cfg.device!r}: choose 'device' or 'cpu'")


class Budget:
    """Turns a candidate's record into its budgeted one: ``apply(record, genotype)``."""

    def __init__(self, cfg, num_classes: int, workdir=None, log=print):
        check(cfg)
        self.cfg = cfg
        self.name = MEASURE_NAMES[cfg.objective]
        self._measure = None
        if cfg.objective == QUALITY:
            return
        from fdn.latency import pieces

        shape = pieces.Shape(cfg.input_size, cfg.batch, num_classes=max(int(num_classes), 1))
        if cfg.objective == LATENCY:
            from fdn.latency import table

            model = table.load_or_build(
                shape,
                cfg.device,
                workdir=workdir,
                cache_dir=cfg.cache_dir,
                calibration=cfg.calibration,
                fit=cfg.fit,
                log=log,
            )
            self._measure = model.estimate_ms
            share, (p10, p50, p90) = target_share(model.estimate_ms, cfg.target)
            log(
                f"latency: random designs estimate {p10:.3g} / {p50:.3g} / {p90:.3g} ms (10th / 50th / 90th "
                f"percentile); the target {cfg.target:g} ms admits {100 * share:.0f}% of them (~30-50% is a fair "
                "first target)"
            )
        else:
            from fdn.latency.exact import ExactCounts

            counts = ExactCounts(shape)
            self._measure = counts.parameters if cfg.objective == PARAMETERS else counts.flops

    def measure(self, genotype, record: dict) -> float | None:
        if self._measure is None:
            value = record.get(self.name)
            return None if value is None else float(value)
        return float(self._measure(genotype))

    def apply(self, record: dict, genotype) -> dict:
        """The record with ``quality`` (the reward as trained), ``measure`` and the budgeted ``reward``."""
        quality = float(record["reward"])
        value = self.measure(genotype, record)
        out = {**record, "quality": quality, "measure": {"name": self.name, "value": value}}
        if self.cfg.objective != QUALITY:
            out["measure"]["target"] = float(self.cfg.target)
            out["reward"] = budgeted_reward(quality, value, self.cfg.target, self.cfg.w_under, self.cfg.w_over)
        return out

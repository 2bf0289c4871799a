"""Progressive early termination: the official ``TaskPerformer(maxval=0.01, delta=0.9)``, seeded.

After stage 1 every candidate's reward ``r`` goes through `step` (paper.md 3.3)::

    delta *= {100: 0.9, 200: 0.8, 300: 0.7, 400: 0.6}.get(n_steps, 1); n_steps += 1
    maxval = 0.99 * maxval + 0.01 * r              # running mean, starts at 0.01
    if r > maxval: n_steps += 1; continue           # (sic: the official code counts this case twice)
    else: u ~ U(0, delta); continue iff r > maxval * (1 - u), otherwise stop

The comparison is against the running mean *after* it took ``r``, and the double increment makes the
delta schedule fire only when ``n_steps`` lands exactly on 100, 200, ...: both are kept as the official
code has them. A stopped candidate's reward is its stage-1 reward.

Why the state is a dict of NumPy scalars and the draw a function of (seed, candidate index): the official
rule draws from the global NumPy stream, so a resumed search cannot replay it (users.md rows 12-13).
Here ``u`` comes from ``default_rng([seed, index])``, so the rule is a pure function of its state and the
candidate, and the state (five numbers) goes into the search checkpoint as it is. Keying the draw by the
candidate index rather than by a draw counter is what lets candidate ``i`` decide against an older state
(``parallel.lag``, `fdn.search.parallel`) with the same draw whichever worker runs it; it changed the logs
of L = 0 searches too (fdn before parallel candidates drew from ``[seed, draws]``).
"""

from __future__ import annotations

import numpy as np

DELTA_SCHEDULE = {100: 0.9, 200: 0.8, 300: 0.7, 400: 0.6}
MOMENTUM = 0.99


def init(seed: int, maxval: float = 0.01, delta: float = 0.9) -> dict:
    """A fresh performer state (what the official code constructs once per search)."""
    return {
        "maxval": np.float64(maxval),  # running mean of rewards: the threshold
        "delta": np.float64(delta),  # tolerance: how far below the mean a candidate may still continue
        "n_steps": np.int64(0),
        "draws": np.int64(0),  # uniform draws made so far (a count for the record; the draw is keyed by index)
        "seed": np.int64(seed),
    }


def to_json(state: dict) -> dict:
    """The state as plain JSON numbers (for checkpoints and `fdn.search.parallel.workers.Job`)."""
    return {k: (float(v) if k in _FLOATS else int(v)) for k, v in state.items()}


def from_json(d: dict) -> dict:
    """`to_json`'s inverse: NumPy scalars, so that `step` computes exactly as on a fresh state."""
    return {k: (np.float64(v) if k in _FLOATS else np.int64(v)) for k, v in d.items()}


_FLOATS = ("maxval", "delta")


def _uniform(state: dict, index: int, high: float) -> float:
    rng = np.random.default_rng([int(state["seed"]) & 0xFFFFFFFF, int(index)])
    return float(rng.uniform(0.0, high))


def step(state: dict, reward: float, index: int) -> tuple[dict, bool, dict]:
    """Feeds candidate ``index``'s stage-1 reward; returns ``(new_state, continue_training, info)``.

    ``info`` holds the ``threshold`` (the running mean compared against), ``tolerance`` (the drawn ``u``,
    or None if no draw was needed) and ``delta``, for the log and the leaderboard plot.
    """
    s = dict(state)
    reward = float(reward)
    s["delta"] = np.float64(s["delta"] * DELTA_SCHEDULE.get(int(s["n_steps"]), 1.0))
    s["n_steps"] = np.int64(s["n_steps"] + 1)
    s["maxval"] = np.float64(MOMENTUM * s["maxval"] + (1.0 - MOMENTUM) * reward)
    info = {"threshold": float(s["maxval"]), "delta": float(s["delta"]), "tolerance": None}
    if reward > s["maxval"]:
        s["n_steps"] = np.int64(s["n_steps"] + 1)
        return s, True, info
    u = _uniform(s, index, float(s["delta"]))
    s["draws"] = np.int64(s["draws"] + 1)
    info["tolerance"] = u
    return s, reward > float(s["maxval"]) * (1.0 - u), info


def continue_probability(reward: float, maxval: float, delta: float) -> float:
    """P(continue) for a reward against an (already updated) mean: ``max(0, 1 - (1 - r / maxval) / delta)``."""
    if reward > maxval:
        return 1.0
    return max(0.0, 1.0 - (1.0 - reward / maxval) / delta)

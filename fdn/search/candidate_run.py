"""One candidate, from genotype to log fields: stage 1, the early-stop rule, stage 2, and failures as reward 0.

Kept apart from the loop (`fdn.search.loop`) because it is the part that touches the trainer: the failure
rules (any exception or non-finite number is a 0 reward with its reason logged, as the official search does)
live here once, and helper tests call `run_candidate` directly (also importable as
``fdn.search.loop.run_candidate``).
"""

from __future__ import annotations

import math

import jax

from fdn.candidate import Trainer
from fdn.candidate.protocol import failure_reason
from fdn.search import early_stop


def _finite(result) -> bool:
    values = [result.reward, *result.metrics.values()]
    return all(math.isfinite(float(v)) for v in values if v is not None)


def _empty_record() -> dict:
    return {
        "stage": 0,
        "stopped_early": False,
        "failure": None,
        "reward": 0.0,
        "stage1_reward": None,
        "miou": None,
        "macc": None,
        "fwiou": None,
        "params": None,
        "params_without_aux": None,
        "early_stop_threshold": None,
    }


def run_candidate(
    trainer: Trainer, genotype, key, es_state, config, on_stage=None, *, index: int = 0
) -> tuple[dict, dict]:
    """Trains and scores candidate ``index``; returns (its log fields, the early-stop state after its reward).

    ``es_state`` is the state the early-stop rule decides against (with ``parallel.lag`` an older one than
    the search's latest: `fdn.search.parallel`); its draw is keyed by ``index``.

    Any exception but KeyboardInterrupt (`CandidateFailure`, out of memory, a compile error) and any
    non-finite reward or metric makes the reward 0 with the reason recorded; the search goes on. A failure in
    stage 1 steps the early-stop rule with reward 0, as the official code (its stage returns 0).
    """
    rec = _empty_record()
    seconds = {"compile": 0.0, "stage1": 0.0, "stage2": 0.0, "eval": 0.0}
    steps_per_s = {}
    # Raw uint32 keys (``PRNGKey`` style): what the trainer's ahead-of-time compiled programs take.
    k1, k2 = (jax.random.key_data(k) for k in jax.random.split(key))

    def account(result, stage):
        s = result.seconds
        seconds["compile"] += float(s["compile"])
        seconds[f"stage{stage}"] += float(s["train"])
        seconds["eval"] += float(s["eval"])
        if result.steps_per_second is not None:
            steps_per_s[f"stage{stage}"] = result.steps_per_second
        rec.update(
            stage=stage,
            reward=float(result.reward),
            params=int(result.params_total),
            params_without_aux=int(result.params_without_aux),
            **{m: float(result.metrics[m]) for m in ("miou", "macc", "fwiou") if m in result.metrics},
        )
        if not _finite(result):
            raise FloatingPointError(f"non-finite reward or metrics in stage {stage}: {result.metrics}")

    stage = 1
    try:
        if on_stage:
            on_stage(1)
        r1 = trainer.stage1(genotype, k1)
        account(r1, 1)
        rec["stage1_reward"] = rec["reward"]
        go_on = True
        if config.early_stop.enabled:
            es_state, go_on, info = early_stop.step(es_state, rec["reward"], index)
            rec["early_stop_threshold"] = info["threshold"]
        if not go_on:
            rec["stopped_early"] = True
        elif config.max_stage >= 2:
            stage = 2
            if on_stage:
                on_stage(2)
            account(trainer.stage2(genotype, r1, k2), 2)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001  (every failure is a 0 reward, as the official search does)
        rec["failure"] = failure_reason(err)
        rec.update(stage=stage, reward=0.0)
        if stage == 1 and config.early_stop.enabled and rec["early_stop_threshold"] is None:
            es_state, _, info = early_stop.step(es_state, 0.0, index)
            rec["early_stop_threshold"] = info["threshold"]
    rec["seconds"] = seconds
    rec["steps_per_s"] = steps_per_s
    return rec, es_state

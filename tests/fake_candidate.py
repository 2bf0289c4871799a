"""A stand-in for `fdn.candidate` with the same interface and instant, deterministic "training".

The search tests use it to check the loop itself (resume, failures, determinism, early stop) in seconds;
``tests/test_search.py`` also runs the real trainer once on ``configs/voc.py:tiny``. The reward is a
deterministic function of the genotype plus noise from the candidate key, so a controller can learn it
(more conv3x3 ops = better). ``FDN_FAKE_SLEEP`` (seconds per stage) slows it down for the kill test;
``FDN_FAKE_FAIL`` ("stage1:N,nan:M") makes candidate N raise `CandidateFailure` / candidate M give NaN.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np


class CandidateFailure(RuntimeError):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass
class StageResult:
    variables: dict
    reward: float
    metrics: dict
    params_total: int
    params_without_aux: int
    seconds: dict


def build_stage1_cache(encoder_apply, encoder_variables, batches, teacher_fn=None, **kwargs):
    n = 0
    for batch in batches:
        n += len(batch["image"])
        if teacher_fn is not None:
            teacher_fn(batch["image"])
    return {"num_examples": n}


def _faults():
    out = {}
    for part in filter(None, os.environ.get("FDN_FAKE_FAIL", "").split(",")):
        kind, _, index = part.partition(":")
        out[int(index)] = kind
    return out


class CandidateTrainer:
    def __init__(self, config, num_classes, encoder_variables, stage1_cache, stage2_batches, val_batches):
        self.config = config
        self.stage2_batches = stage2_batches
        self.calls = 0
        self.sleep = float(os.environ.get("FDN_FAKE_SLEEP", "0"))

    def precompile(self, genotype):
        pass

    def _result(self, genotype, key, scale):
        ops = [genotype.op0] + [o for p in genotype.pairs for o in p[2:]]
        skill = sum(o == 1 for o in ops) / len(ops)
        noise = float(jax.random.uniform(key, (), minval=-0.02, maxval=0.02))
        reward = scale * (0.2 + 0.6 * skill) + noise
        metrics = {"miou": reward, "macc": reward, "fwiou": reward, "reward": reward}
        return StageResult({}, reward, metrics, 1000 + 10 * sum(ops), 900, {"compile": 0.01, "train": 0.02,
                                                                            "eval": 0.01})

    def stage1(self, genotype, key):
        index = self.calls
        self.calls += 1
        time.sleep(self.sleep)
        fault = _faults().get(index)
        if fault == "stage1":
            raise CandidateFailure("injected stage-1 failure")
        result = self._result(genotype, key, 0.8)
        if fault == "nan":
            result.reward = float("nan")
        return result

    def stage2(self, genotype, stage1_result, key):
        time.sleep(self.sleep)
        next(self.stage2_batches())  # advances the shared stream (its state is checkpointed)
        return self._result(genotype, key, 1.0)

"""A stand-in trainer behind the search's declared contract (`fdn.candidate.protocol`), with instant,
deterministic "training".

The search tests pass ``CandidateTrainer`` (this module's) as the loop's ``trainer_factory`` to check the loop
itself (resume, failures, determinism, early stop) in seconds; ``tests/test_search.py`` also runs the real
trainer on ``configs/voc.py:tiny``. The reward is a deterministic function of the genotype plus noise from the
candidate key, so a controller can learn it (more conv3x3 ops = better). ``FDN_FAKE_SLEEP`` (seconds per
stage) slows it down for the kill test; ``FDN_FAKE_FAIL`` ("stage1:N,nan:M") makes candidate N raise
`CandidateFailure` / candidate M give NaN.

``python -m tests.fake_candidate FLAGS`` is ``python -m fdn.search FLAGS`` with this trainer (for the tests
that kill or interrupt a search process).
"""

from __future__ import annotations

import functools
import os
import time

import jax

from fdn.candidate.protocol import CandidateFailure, StageResult


def _faults():
    out = {}
    for part in filter(None, os.environ.get("FDN_FAKE_FAIL", "").split(",")):
        kind, _, index = part.partition(":")
        out[int(index)] = kind
    return out


def _no_variables(program_variables):
    return {"params": {}, "batch_stats": {}}


class CandidateTrainer:
    """Implements ``fdn.candidate.protocol.Trainer``; the class is the ``TrainerFactory``."""

    def __init__(self, config, num_classes, encoder_variables, stage1_cache, train_batches, val_batches, *,
                 expand_first_block=True):
        self.config = config
        self.train_batches = train_batches
        self.calls = 0
        self.sleep = float(os.environ.get("FDN_FAKE_SLEEP", "0"))

    def precompile(self, genotype) -> dict:
        return {}

    def _result(self, genotype, key, scale):
        ops = [genotype.op0] + [o for p in genotype.pairs for o in p[2:]]
        skill = sum(o == 1 for o in ops) / len(ops)
        noise = float(jax.random.uniform(key, (), minval=-0.02, maxval=0.02))
        reward = scale * (0.2 + 0.6 * skill) + noise
        metrics = {"miou": reward, "macc": reward, "fwiou": reward, "reward": reward}
        return StageResult(reward, metrics, 1000 + 10 * sum(ops), 900,
                           {"compile": 0.01, "train": 0.02, "eval": 0.01}, steps=1, encoder_variables={},
                           decoder_program_variables={}, to_ordinary=_no_variables)

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
        next(self.train_batches())  # advances the shared stream (its state is checkpointed)
        return self._result(genotype, key, 1.0)


if __name__ == "__main__":
    from fdn.cli import run_command
    from fdn.search import __main__ as search_command

    run_command(functools.partial(search_command.main, trainer_factory=CandidateTrainer), "fdn.search")

"""A stand-in trainer behind the search's declared contract (`fdn.candidate.protocol`), with instant,
deterministic "training".

The search tests pass ``CandidateTrainer`` (this module's) as the loop's ``trainer_factory`` to check the loop
itself (resume, failures, determinism, early stop) in seconds; ``tests/test_search.py`` also runs the real
trainer on ``configs/voc.py:tiny``. The reward is a deterministic function of the genotype plus noise from the
candidate key, so a controller can learn it (more conv3x3 ops = better), plus, in stage 2, a term computed from
the ``stage2.steps_per_epoch`` batches it takes from the candidate's own stage-2 stream (seeded by the candidate
index, `fdn.search.parallel.streams`), so that a search which feeds a candidate another candidate's batches
changes the rewards. Each trainer is built for one ``device`` (None: the default) and draws its noise there.
``FDN_FAKE_SLEEP`` (seconds per stage) slows it down for the kill tests; ``FDN_FAKE_FAIL`` ("stage1:N,nan:M",
or "stage1:*" for every candidate) makes candidate N raise `CandidateFailure` / candidate M give NaN (N, M:
candidate indices, whichever worker trains them).

``python -m tests.fake_candidate FLAGS`` is ``python -m fdn.search FLAGS`` with this trainer (for the tests
that kill or interrupt a search process); with ``FDN_TRAINER=real`` it uses the real `fdn.candidate` trainer.
Either way, ``FDN_STAGE1_CALLS=FILE`` appends one line (the genotype's hash) to FILE per stage-1 call, so a
test can count the candidates a resumed search trained again.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np

from fdn.candidate.protocol import CandidateFailure, StageResult
from fdn.search.parallel import streams


def _faults():
    out = {}
    for part in filter(None, os.environ.get("FDN_FAKE_FAIL", "").split(",")):
        kind, _, index = part.partition(":")
        out[index if index == "*" else int(index)] = kind
    return out


def _fault(index):
    faults = _faults()
    return faults.get(index, faults.get("*"))


def _data_term(batches) -> float:
    """A small reward term that depends on every pixel of the batches consumed (in [0, 0.05))."""
    mean = float(np.mean([np.asarray(b["image"], np.float64).mean() for b in batches]))
    return 0.05 * ((mean * 1000.0) % 1.0)


def _no_variables(program_variables):
    return {"params": {}, "batch_stats": {}}


class CandidateTrainer:
    """Implements ``fdn.candidate.protocol.Trainer``; the class is the ``TrainerFactory``."""

    def __init__(
        self,
        config,
        num_classes,
        encoder_variables,
        stage1_cache,
        train_batches,
        val_batches,
        *,
        expand_first_block=True,
        device=None,
    ):
        self.config = config
        self.train_batches = train_batches
        self.device = device
        self.calls = 0
        self.sleep = float(os.environ.get("FDN_FAKE_SLEEP", "0"))

    def precompile(self, genotype) -> dict:
        return {}

    def _result(self, genotype, key, scale, data=0.0):
        ops = [genotype.op0] + [o for p in genotype.pairs for o in p[2:]]
        skill = sum(o == 1 for o in ops) / len(ops)
        key = key if self.device is None else jax.device_put(key, self.device)
        noise = float(jax.random.uniform(key, (), minval=-0.02, maxval=0.02))
        reward = scale * (0.2 + 0.6 * skill) + noise + data
        metrics = {"miou": reward, "macc": reward, "fwiou": reward, "reward": reward}
        return StageResult(
            reward,
            metrics,
            1000 + 10 * sum(ops),
            900,
            {"compile": 0.01, "train": 0.02, "eval": 0.01},
            steps=1,
            encoder_variables={},
            decoder_program_variables={},
            to_ordinary=_no_variables,
        )

    def _index(self):
        """The candidate's index (the search's workers set it), or this trainer's call count outside a search."""
        try:
            return streams.current_index()
        except streams.NoCandidateError:
            return self.calls

    def stage1(self, genotype, key):
        index = self._index()
        self.calls += 1
        time.sleep(self.sleep)
        fault = _fault(index)
        if fault == "stage1":
            raise CandidateFailure("injected stage-1 failure")
        result = self._result(genotype, key, 0.8)
        if fault == "nan":
            result.reward = float("nan")
        return result

    def stage2(self, genotype, stage1_result, key):
        time.sleep(self.sleep)
        steps = self.config.stage2.epochs * self.config.stage2.steps_per_epoch
        if steps <= 0:  # the search resolves 0 (fdn.search.setup); the stream is endless
            raise CandidateFailure(f"stage 2: {steps} steps")
        stream = self.train_batches()  # the candidate's own stream (fdn.search.parallel.streams)
        return self._result(genotype, key, 1.0, data=_data_term([next(stream) for _ in range(steps)]))


def counting(factory, calls_file):
    """A trainer factory whose trainers append the genotype's hash to ``calls_file`` at every stage-1 call."""

    def make(*args, **kwargs):
        trainer = factory(*args, **kwargs)
        stage1 = trainer.stage1

        def counted_stage1(genotype, key):
            from fdn import genotype as gt

            with open(calls_file, "a") as f:
                f.write(gt.parse(genotype).short_hash + "\n")
            return stage1(genotype, key)

        trainer.stage1 = counted_stage1
        return trainer

    return make


def _factory_from_env():
    if os.environ.get("FDN_TRAINER") == "real":
        from fdn.candidate import CandidateTrainer as factory
    else:
        factory = CandidateTrainer
    calls = os.environ.get("FDN_STAGE1_CALLS")
    return counting(factory, calls) if calls else factory


if __name__ == "__main__":
    from fdn.cli import run_command
    from fdn.search import __main__ as search_command

    run_command(functools.partial(search_command.main, trainer_factory=_factory_from_env()), "fdn.search")

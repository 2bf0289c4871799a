"""What a worker is given and what it gives back: `Job` and `Outcome`, plain JSON-able data, and `run_job`.

Kept as plain data because jobs and outcomes may travel between hosts (JAX's coordination-service key-value
store carries strings): everything a worker needs to train candidate ``index`` is in its `Job` (the
proposed actions, the candidate's raw key, the early-stop snapshot it must decide against), and everything
the search loop needs to commit it is in its `Outcome`. The loop only sees the `Workers` protocol, so a pool
of threads on this host (`fdn.search.parallel.local.LocalWorkers`) and a pool on other hosts are
interchangeable. `run_job` is the one per-candidate function every worker calls.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Protocol, runtime_checkable

import jax
import numpy as np

from fdn import genotype as gt
from fdn.search import early_stop
from fdn.search.candidate_run import run_candidate
from fdn.search.parallel import streams


@dataclasses.dataclass(frozen=True)
class Job:
    """Candidate ``index``: its ``actions`` (the controller's 20 decisions), ``key_data`` (its raw uint32 key,
    ``jax.random.key_data`` of ``fold_in(loop key, index)``) and ``early_stop`` (the committed early-stop state
    after the stage-1 rewards of candidates ``0..index-1-lag``, JSON-able: `fdn.search.early_stop.to_json`)."""

    index: int
    actions: tuple[int, ...]
    key_data: tuple[int, ...]
    early_stop: dict

    def to_dict(self) -> dict:
        return {
            "index": int(self.index),
            "actions": [int(a) for a in self.actions],
            "key_data": [int(k) for k in self.key_data],
            "early_stop": early_stop.to_json(self.early_stop),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Job:
        return cls(
            index=int(d["index"]),
            actions=tuple(int(a) for a in d["actions"]),
            key_data=tuple(int(k) for k in d["key_data"]),
            early_stop=early_stop.to_json(d["early_stop"]),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Job:
        return cls.from_dict(json.loads(s))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What candidate ``index`` gave: ``fields`` (`fdn.search.candidate_run.run_candidate`'s log fields: reward,
    stage, stage1_reward, failure, metrics, params, seconds incl. ``worker_total``, steps_per_s),
    ``early_stop_info`` (``threshold`` compared against and whether the rule ``stopped`` it) and ``worker``
    (which worker ran it: for measurements only, never for results)."""

    index: int
    fields: dict
    early_stop_info: dict
    worker: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Outcome:
        d = json.loads(s)
        return cls(int(d["index"]), d["fields"], d["early_stop_info"], str(d["worker"]))


@runtime_checkable
class Workers(Protocol):
    """Trains submitted jobs, ``capacity`` at a time, and hands back their outcomes in any order."""

    capacity: int

    def submit(self, job: Job) -> None:
        """Queue ``job`` (it may wait for a free worker; submitting never blocks on training)."""

    def next_outcome(self, timeout_s: float | None = None) -> Outcome | None:
        """The next finished job's outcome (any completion order), or None after ``timeout_s`` seconds."""

    def close(self) -> None:
        """Stop taking jobs; jobs in flight are dropped (the loop has not committed them)."""


def candidate_key(loop_key_data, index: int) -> tuple[int, ...]:
    """Candidate ``index``'s raw key: the loop key folded with the index, so it never depends on a shared
    stream, on the worker or on how many candidates ran before in this session."""
    key = jax.random.fold_in(jax.random.wrap_key_data(np.asarray(loop_key_data, np.uint32)), int(index))
    return tuple(int(k) for k in np.asarray(jax.random.key_data(key)))


def run_job(trainer, job: Job, config, *, worker: str = "", on_stage=None) -> Outcome:
    """Trains and scores ``job``'s candidate on ``trainer``; a failure is a 0 reward in the outcome (never raised).

    The early-stop decision is taken against the job's snapshot with the draw keyed by the candidate index
    (`fdn.search.early_stop.step`); the stage-2 batches come from the candidate's own stream
    (`fdn.search.parallel.streams`). So the outcome depends on the job alone.
    """
    start = time.time()
    genotype = gt.Genotype.from_actions(list(job.actions))
    key = jax.random.wrap_key_data(np.asarray(job.key_data, np.uint32))
    with streams.candidate(job.index):
        fields, _ = run_candidate(
            trainer, genotype, key, early_stop.from_json(job.early_stop), config, on_stage, index=job.index
        )
    fields["seconds"]["worker_total"] = time.time() - start
    info = {"threshold": fields["early_stop_threshold"], "stopped": bool(fields["stopped_early"])}
    return Outcome(index=job.index, fields=fields, early_stop_info=info, worker=worker)

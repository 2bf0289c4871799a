"""The search's resumable state, checkpointed with Orbax (`fdn.checkpointing`) after every candidate.

One Orbax step per finished candidate (step = candidates done) holds two items:

* ``arrays`` (StandardSave): the agent state (controller params, optimiser, baseline, rollout buffer, its
  RNG key) and the search loop's own RNG key;
* ``meta`` (JsonSave): the candidate counter, the byte length of ``candidates.jsonl`` after the last line
  written, the early-stop state, the proposals not yet committed (`fdn.search.proposals`: the jobs in flight
  and queued, which a resumed search trains again), the best reward so far and the wall seconds spent, plus
  the settings that decide results and their fingerprint (`fdn.search.settings`), so that a workdir is not
  resumed with other settings.

No data iterator state: every candidate's stage-2 batches come from its own stream, seeded by (seed,
candidate index) (`fdn.search.parallel.streams`). Checkpoints of an fdn before that (``format`` < 2: a
shared stream, early-stop draws keyed by a counter) are refused with one line rather than continued as a
different search.

Orbax writes a step into a temporary directory and renames it when complete, so ``latest_step`` only ever
sees whole checkpoints: a kill during a save leaves the previous step as the latest. Together with
`fdn.search.run_log.truncate_to` this gives the resume guarantee: at most the candidate in flight is lost.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fdn.checkpointing import CheckpointError, StepManager, failures_as_checkpoint_error
from fdn.search import early_stop
from fdn.search import settings as settings_lib

CHECKPOINT_DIR = "checkpoints"
FORMAT = 2  # 2: per-candidate stage-2 streams and early-stop draws keyed by the candidate index (issue 13)


@dataclasses.dataclass
class SearchState:
    """Everything that changes from one candidate to the next."""

    agent: Any  # AgentState pytree
    rng: np.ndarray  # (2,) uint32 raw key of the search loop
    counter: int = 0  # candidates finished (and logged)
    log_size: int = 0  # bytes of candidates.jsonl after the last logged candidate
    early_stop: dict = dataclasses.field(default_factory=dict)
    best_reward: float = 0.0
    elapsed: float = 0.0  # wall seconds of search (over all sessions)
    pending: list = dataclasses.field(default_factory=list)  # proposals not yet committed (Proposal.to_dict)

    def meta(self, settings: dict | None) -> dict:
        return {
            "format": FORMAT,
            "counter": int(self.counter),
            "log_size": int(self.log_size),
            "best_reward": float(self.best_reward),
            "elapsed": float(self.elapsed),
            "pending": self.pending,
            "fingerprint": settings_lib.fingerprint(settings) if settings is not None else "",
            "settings": settings,
            "early_stop": early_stop.to_json(self.early_stop),
        }


_HINT = (
    "the checkpoint is damaged or of another fdn version: delete that step directory to resume from the one "
    "before (the log is cut back to it), or use a new --workdir; nothing was deleted"
)


class SearchCheckpointer:
    """Save/restore `SearchState` under ``WORKDIR/checkpoints``; keeps the latest ``keep`` steps.

    ``settings`` (`fdn.search.settings.result_settings`) are stored with every step; `restore` refuses a
    checkpoint written with other ones (`SettingsMismatch`). None skips that check (tools that only read).
    """

    def __init__(self, workdir: str | os.PathLike, settings: dict | None = None, keep: int = 2):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / CHECKPOINT_DIR
        self.settings = settings
        # a multi-process search: process 0 alone owns the checkpoints (fdn.search.parallel.remote)
        solo = {jax.process_index()} if jax.process_count() > 1 else None
        self.steps = StepManager(self.directory, keep_latest=keep, processes=solo)

    def latest_step(self) -> int | None:
        return self.steps.latest_step()

    def save(self, state: SearchState) -> None:
        """Saves ``state`` as step ``state.counter``; returns when it is complete on disk."""
        arrays = {"agent": jax.device_get(state.agent), "rng": np.asarray(state.rng, np.uint32)}
        self.steps.save(state.counter, arrays={"arrays": arrays}, json={"meta": state.meta(self.settings)})

    def restore(self, like: SearchState) -> SearchState | None:
        """The latest saved state (shaped like ``like``), or None when there is none."""
        step = self.latest_step()
        if step is None:
            return None
        target = {"agent": like.agent, "rng": np.asarray(like.rng, np.uint32)}
        # The settings first: a checkpoint of other settings may not even fit this agent's shapes.
        meta = self.steps.restore(step, json=("meta",), hint=_HINT)["meta"]
        if int(meta.get("format", 1)) < FORMAT:
            raise CheckpointError(
                f"{self.directory} was written by an fdn before parallel candidates (a shared stage-2 stream and "
                "early-stop draws keyed by a counter), so it cannot be continued as the same search; use a new "
                "--workdir (or the older fdn to finish it)"
            )
        if self.settings is not None:
            settings_lib.check_same(meta.get("settings"), meta.get("fingerprint"), self.settings, self.workdir)
        arrays = self.steps.restore(step, arrays={"arrays": target}, hint=_HINT)["arrays"]
        with failures_as_checkpoint_error(f"cannot read step {step} of {self.directory}", _HINT):
            return _state_from(arrays, meta)

    def close(self) -> None:
        self.steps.close()


def _state_from(arrays: dict, meta: dict) -> SearchState:
    return SearchState(
        agent=arrays["agent"],
        rng=np.asarray(arrays["rng"], np.uint32),
        counter=int(meta["counter"]),
        log_size=int(meta["log_size"]),
        early_stop=early_stop.from_json(meta["early_stop"]),
        best_reward=float(meta["best_reward"]),
        elapsed=float(meta["elapsed"]),
        pending=list(meta.get("pending") or []),
    )

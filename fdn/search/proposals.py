"""Where the next candidate comes from: one fresh proposal, or (``compile_ahead``) one proposed a candidate
ahead whose programs compile in a background thread while the current candidate trains."""

from __future__ import annotations

import threading

import numpy as np

from fdn import genotype as gt
from fdn.candidate import Trainer


def next_proposal(agent, state, compile_ahead: bool):
    """``(genotype, agent_state, info, pending)`` of the candidate to run now.

    Without compile-ahead: one fresh proposal. With it, proposals run one candidate ahead: the candidate to run
    now was proposed (and its compile started) while the previous one trained, and the one after it is
    proposed now, from the policy before this candidate's update. PPO corrects for that lag with the
    sampling-time log-probabilities it stores; it is a deviation from the official loop, hence a setting.
    ``pending`` (JSON-able) goes into the checkpoint so that a resumed run runs the same candidate.
    """
    agent_state = state.agent
    if not compile_ahead:
        genotypes, agent_state, info = agent.propose(agent_state, 1)
        return genotypes[0], agent_state, info, None
    if state.pending is None:
        genotypes, agent_state, info = agent.propose(agent_state, 1)
        current = _pending_of(info)
    else:
        current = state.pending
    _, agent_state, info_next = agent.propose(agent_state, 1)
    info = {
        "actions": np.asarray([current["actions"]], np.int32),
        "log_probs": np.asarray([current["log_prob"]]),
        "entropies": np.asarray([current["entropy"]]),
    }
    return gt.Genotype.from_actions(current["actions"]), agent_state, info, _pending_of(info_next)


def _pending_of(info) -> dict:
    return {
        "actions": [int(a) for a in info["actions"][0]],
        "log_prob": float(info["log_probs"][0]),
        "entropy": float(info["entropies"][0]),
    }


class CompileAhead:
    """Compiles the next candidate's programs in a background thread while the current one trains.

    XLA compiles mostly on one thread, so on a small CPU this overlaps with training rather than competing
    with it for every core. Any error is left for the candidate itself to meet (and record).
    """

    def __init__(self):
        self._thread = None

    def start(self, trainer: Trainer, pending: dict) -> None:
        genotype = gt.Genotype.from_actions(pending["actions"])

        def work():
            try:
                trainer.precompile(genotype)
            except Exception:  # noqa: BLE001
                pass

        self._thread = threading.Thread(target=work, name="fdn-compile-ahead", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

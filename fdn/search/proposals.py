"""Where candidates come from: the agent's proposals in a fixed order, ``lag`` candidates ahead of the commits.

The order of agent calls never depends on the worker count or on timing (issue 13)::

    propose 0..L from the initial agent state          # L = parallel.lag
    after committing candidate j (in index order):     # agent.update, early-stop step, log line, checkpoint
        propose candidate j + 1 + L

so candidate ``i`` comes from the policy that has seen the rewards of ``0..i-1-L``, and its `Job` carries
the early-stop state after the same candidates. L = 0 is the paper's sequential search. PPO keeps the
sampling-time log-probabilities (`Proposal.log_prob`), so its update stays sound with a lag (the buffer is
partly off-policy, as with compile-ahead before). Proposals not yet committed go into the checkpoint, so a
resumed search trains exactly the jobs an uninterrupted one would. Proposals are made even past
``num_candidates`` (a runtime key): the agent's random stream must not depend on where a session stops.
"""

from __future__ import annotations

import dataclasses

from fdn.search import early_stop
from fdn.search.parallel.workers import Job, candidate_key


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A proposed candidate: the `Job` the workers train, plus what only the agent's update and the log need."""

    job: Job
    log_prob: float  # at sampling time: what PPO's ratio and REINFORCE's gradient use
    entropy: float

    @property
    def index(self) -> int:
        return self.job.index

    def to_dict(self) -> dict:
        return {"job": self.job.to_dict(), "log_prob": self.log_prob, "entropy": self.entropy}

    @classmethod
    def from_dict(cls, d: dict) -> Proposal:
        return cls(Job.from_dict(d["job"]), float(d["log_prob"]), float(d["entropy"]))


def effective_lag(config) -> int:
    """``parallel.lag``, raised to 1 by ``compile_ahead`` (which proposes one candidate ahead: the same order)."""
    lag = int(config.parallel.lag)
    return max(lag, 1) if config.compile_ahead else lag


def propose(agent, agent_state, index: int, loop_key_data, early_stop_state: dict) -> tuple[Proposal, object]:
    """Candidate ``index`` from ``agent_state``, to be decided against ``early_stop_state``; returns it and the
    agent state after the proposal (its random key advanced)."""
    _, agent_state, info = agent.propose(agent_state, 1)
    job = Job(
        index=int(index),
        actions=tuple(int(a) for a in info["actions"][0]),
        key_data=candidate_key(loop_key_data, index),
        early_stop=early_stop.to_json(early_stop_state),
    )
    return Proposal(job, float(info["log_probs"][0]), float(info["entropies"][0])), agent_state


def initial(agent, agent_state, lag: int, loop_key_data, early_stop_state: dict) -> tuple[list[Proposal], object]:
    """Candidates ``0..lag``, all from the initial agent and early-stop states."""
    out = []
    for index in range(lag + 1):
        proposal, agent_state = propose(agent, agent_state, index, loop_key_data, early_stop_state)
        out.append(proposal)
    return out, agent_state

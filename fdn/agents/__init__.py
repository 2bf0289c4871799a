"""Search agents: PPO (the official one), REINFORCE, and random search as the control experiment.

``agent = make_agent(name, config)``; ``state = agent.init(key)``;
``genotypes, state, info = agent.propose(state, n)``;
``state, metrics = agent.update(state, info["actions"], info["log_probs"], rewards)``.
The state is one pytree (`AgentState`); `save_agent_state` / `restore_agent_state` persist it with Orbax.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from fdn.agents.base import Agent, default_config
from fdn.agents.ppo import PPO
from fdn.agents.random_search import RandomSearch
from fdn.agents.reinforce import Reinforce
from fdn.agents.saving import restore_agent_state, save_agent_state
from fdn.agents.state import AgentState, Buffer
from fdn.errors import UserError

AGENTS = {cls.name: cls for cls in (PPO, Reinforce, RandomSearch)}


class AgentConfigError(UserError, ValueError):
    """An agent name or setting of the search config that does not exist or cannot work (a user error)."""


def make_agent(name: str, config: Mapping[str, Any] | None = None) -> Agent:
    """An agent by name (``ppo``, ``reinforce``, ``random``); ``config`` overrides `default_config` entries.

    Unknown names and unknown config keys are errors, so a typo cannot silently fall back to a default.
    """
    if name not in AGENTS:
        raise AgentConfigError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)} (config.agent)")
    cfg = default_config()
    overrides = dict(config.items()) if config is not None else {}
    unknown = sorted(set(overrides) - set(cfg.keys()))
    if unknown:
        raise AgentConfigError(f"unknown agent settings {unknown}; known: {sorted(cfg.keys())}")
    cfg.update(overrides)
    if cfg.minibatch_size < 1 or cfg.buffer_size < 1 or cfg.ppo_epochs < 1:
        raise AgentConfigError("agent settings buffer_size, minibatch_size and ppo_epochs must be at least 1")
    return AGENTS[name](ml_collections.FrozenConfigDict(cfg))


__all__ = [
    "AGENTS",
    "AgentConfigError",
    "Agent",
    "AgentState",
    "Buffer",
    "PPO",
    "RandomSearch",
    "Reinforce",
    "default_config",
    "make_agent",
    "restore_agent_state",
    "save_agent_state",
]

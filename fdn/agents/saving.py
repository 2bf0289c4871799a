"""Save and restore an `AgentState` exactly (every leaf is an array, the RNG key included).

A thin layer over `fdn.checkpointing` (one pytree in one directory), so the agent's state can be kept on its
own, e.g. to inspect or reuse a trained controller; the search stores the same pytree as an item of its own
step checkpoints (`fdn.search.state`).
"""

from __future__ import annotations

import os

from fdn import checkpointing


def save_agent_state(path: str | os.PathLike, state) -> None:
    """Writes ``state`` to the directory ``path`` (replacing it if present) and waits until it is on disk."""
    checkpointing.save_tree(path, state)


def restore_agent_state(path: str | os.PathLike, like):
    """The state saved at ``path``, restored into the structure, shapes and dtypes of ``like``.

    ``like`` is any state of the same agent and config (e.g. ``agent.init(key)``); its values are unused. A
    damaged or mismatching directory raises `fdn.checkpointing.CheckpointError`.
    """
    return checkpointing.restore_tree(
        path,
        like,
        what=f"cannot restore the agent state in {os.path.abspath(os.fspath(path))}",
        hint="was it saved by an agent of the same kind and config? save it again",
    )

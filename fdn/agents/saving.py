"""Save and restore an `AgentState` with Orbax, exactly (every leaf is an array, the RNG key included).

Self-contained on purpose: a search-wide checkpoint module can store the same pytree as one of its items.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def save_agent_state(path: str | os.PathLike, state) -> None:
    """Writes ``state`` to the directory ``path`` (replacing it if present) and waits until it is on disk."""
    path = os.path.abspath(os.fspath(path))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, state, force=True)
        checkpointer.wait_until_finished()


def restore_agent_state(path: str | os.PathLike, like):
    """The state saved at ``path``, restored into the structure, shapes and dtypes of ``like``.

    ``like`` is any state of the same agent and config (e.g. ``agent.init(key)``); its values are unused.
    """
    path = os.path.abspath(os.fspath(path))
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(path, abstract)

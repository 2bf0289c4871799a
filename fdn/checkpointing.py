"""Every Orbax call of fdn, in one place: single pytrees, step managers, and what a damaged checkpoint means.

fdn writes three kinds of checkpoints (a model's variables, the training state, the search state) and the
agent state on its own. They differ only in which items a step holds, so the Orbax mechanics live here once:

* `save_tree` / `restore_tree`: one pytree in one directory (``StandardCheckpointer``), used by model
  checkpoints (`fdn.serve.checkpoint`) and the agent state (`fdn.agents.saving`);
* `StepManager`: a directory of numbered steps (``CheckpointManager``) whose steps hold named items (array
  pytrees, JSON dicts, grain iterators) and which keeps the latest steps and, optionally, the best-scoring one;
  used by the training state (`fdn.serve.checkpoint.TrainCheckpoints`) and the search state
  (`fdn.search.state`).

Saves are atomic: Orbax writes into a temporary directory and renames it when complete, so a kill during a save
never leaves a half-written step that ``latest_step`` would pick. Restores take an *abstract* target (shapes,
dtypes, shardings; `abstract_like`), so nothing is allocated twice and the restored arrays land where the
caller wants them.

Orbax raises many exception types for a truncated, corrupt or mismatching checkpoint (ValueError, KeyError,
OSError, tensorstore errors, ...). A restore turns every one of them into a `CheckpointError`, a `UserError`,
whose one-line message names the directory and what to do, so commands report it instead of a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from fdn.errors import UserError, one_line

# The metric a `StepManager` with ``keep_best`` ranks its steps by (higher is better).
SCORE = "score"
_MAX_REASON = 300  # characters of the underlying error kept in a CheckpointError message


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, incomplete, corrupt or does not fit its own description."""


def abstract_like(tree):
    """The ``jax.ShapeDtypeStruct`` of every leaf of ``tree`` (leaves that are already abstract stay as they are)."""
    return jax.tree.map(
        lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x), tree
    )


@contextlib.contextmanager
def failures_as_checkpoint_error(what: str, hint: str):
    """Re-raise any failure inside as ``CheckpointError("{what}: {Type}: {reason}; {hint}")``, on one line.

    ``what`` names the checkpoint ("cannot restore ... in DIR"), ``hint`` says what to do about it. The
    original traceback is dropped: it is Orbax's internals, not the user's problem.
    """
    _drop_late_callback_errors()
    try:
        yield
    except CheckpointError:
        raise
    except Exception as err:  # Orbax and tensorstore raise many types for damaged or mismatching files
        raise CheckpointError(f"{what}: {type(err).__name__}: {one_line(err, _MAX_REASON)}; {hint}") from None


def _drop_late_callback_errors() -> None:
    """After a failed restore, tensorstore reads still in flight finish into Orbax's closed asyncio loop, and
    their threads print "RuntimeError: Event loop is closed" tracebacks around the one-line error, and Orbax's
    read coroutines left unfinished print theirs ("Exception ignored in: <coroutine ...>") when collected. They
    say nothing the `CheckpointError` does not, so drop exactly those: that error raised on a thread other than
    the main one (``sys.excepthook``, ``sys.unraisablehook``) and unraisable errors of coroutines defined in
    Orbax (``sys.unraisablehook``); everything else still reaches the previous hooks. The sibling reads' own
    tensorstore errors, which nobody awaited after the first one failed, are logged by asyncio as "Task exception
    was never retrieved" when their tasks are collected: `_unretrieved_read_errors` drops those records too.

    Installed before a restore starts, not when its failure reaches us: the reads can finish (and print) in the
    moment between Orbax closing its loop and the exception arriving here, which a loaded machine makes likely.
    """
    if getattr(sys.excepthook, "fdn_drops_late_callbacks", False):
        return

    def late(exc) -> bool:
        return (
            isinstance(exc, RuntimeError)
            and str(exc) == "Event loop is closed"
            and threading.current_thread() is not threading.main_thread()
        )

    def orbax_coroutine(obj) -> bool:  # a read coroutine of the failed restore, garbage-collected with its error
        code = getattr(obj, "cr_code", None)
        return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename

    previous_except, previous_unraisable = sys.excepthook, sys.unraisablehook

    def excepthook(kind, value, tb):
        if not late(value):
            previous_except(kind, value, tb)

    def unraisablehook(info):
        if not (late(info.exc_value) or orbax_coroutine(info.object)):
            previous_unraisable(info)

    excepthook.fdn_drops_late_callbacks = True
    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
    logging.getLogger("asyncio").addFilter(_unretrieved_read_errors)


_STATUS_ERROR = re.compile(r"[A-Z]+(_[A-Z]+)*: ")  # tensorstore's errors start with an absl status code


def _unretrieved_read_errors(record: logging.LogRecord) -> bool:
    """False (drop) for asyncio's "Task exception was never retrieved" whose exception is a tensorstore error."""
    exc = record.exc_info[1] if record.exc_info else None
    unretrieved = str(record.msg).startswith("Task exception was never retrieved")
    return not (unretrieved and exc is not None and _STATUS_ERROR.match(str(exc)) is not None)


# ------------------------------------------------------------------------------------------ single pytrees
def _this_process_only() -> dict:
    """Single pytrees are written by one process (process 0 exports a model or a search's teacher) and read
    by each process on its own, so in a multi-process run orbax must not wait for the other processes."""
    return {} if jax.process_count() == 1 else {"multiprocessing_options": _only({jax.process_index()})}


def save_tree(path: str | os.PathLike, tree) -> Path:
    """Writes the pytree ``tree`` to the directory ``path`` (replacing it if present); returns when on disk."""
    path = Path(path).absolute()
    with ocp.StandardCheckpointer(**_this_process_only()) as checkpointer:
        checkpointer.save(path, tree, force=True)
        checkpointer.wait_until_finished()
    return path


def restore_tree(
    path: str | os.PathLike,
    like,
    *,
    what: str | None = None,
    hint: str = "the checkpoint is damaged or of another model: write it again",
):
    """The pytree saved at ``path``, restored into the structure, shapes and dtypes of ``like``.

    ``like`` may be concrete (its values are unused) or abstract. A failure raises `CheckpointError` with
    ``what`` (default: "cannot restore PATH") and ``hint``.
    """
    path = Path(path).absolute()
    with failures_as_checkpoint_error(what or f"cannot restore {path}", hint):
        with ocp.StandardCheckpointer(**_this_process_only()) as checkpointer:
            return require_shapes(checkpointer.restore(path, abstract_like(like)), like)


def require_shapes(restored, like):
    """``restored``, after checking that each array has the shape of its counterpart in ``like``.

    Orbax restores an array with the shape it was saved with, whatever the target says, so a checkpoint whose
    description does not match its arrays (a json edited or copied from another model, a training state of
    other settings) would otherwise fail later, inside the model, with a traceback instead of a
    `CheckpointError`. Raises ``ValueError`` naming the first mismatching array (callers turn it into one).
    """
    paths = jax.tree_util.tree_flatten_with_path(abstract_like(like))[0]
    got = jax.tree.leaves(restored)
    for (key, want), array in zip(paths, got, strict=True):
        if np.shape(array) != tuple(want.shape):
            raise ValueError(
                f"{jax.tree_util.keystr(key)} has shape {np.shape(array)} in the checkpoint, expected {want.shape}"
            )
    return restored


def _only(processes: set[int]):
    return ocp.options.MultiprocessingOptions(primary_host=min(processes), active_processes=set(processes))


# ------------------------------------------------------------------------------------------ numbered steps
class StepManager:
    """Numbered steps in ``directory``, each holding named items; keeps the latest ``keep_latest`` steps.

    With ``keep_best``, the step with the highest ``score`` (passed to `save`) is kept too, until a better one
    comes; steps saved without a score never count as best. ``asynchronous`` saves return before the arrays
    are on disk (call `wait` before relying on them); otherwise `save` returns when the step is complete.
    ``processes``: the only processes of a multi-process run that use this manager (a search's process 0);
    None = every process takes part in every save (data-parallel training).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_latest: int = 1,
        keep_best: bool = False,
        asynchronous: bool = False,
        processes: set[int] | None = None,
    ):
        from orbax.checkpoint import checkpoint_managers as cm

        policy = cm.LatestN(keep_latest)
        if keep_best:
            policy = cm.AnyPreservationPolicy(
                [policy, cm.BestN(get_metric_fn=lambda m: m[SCORE], n=1, keep_checkpoints_without_metrics=False)]
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            create=processes is None,  # orbax cannot create it for a subset of processes
            enable_async_checkpointing=asynchronous,
            **({} if processes is None else {"multiprocessing_options": _only(processes)}),
        )
        self.directory = Path(directory).absolute()
        if processes is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.asynchronous = asynchronous
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        *,
        arrays: dict | None = None,
        json: dict | None = None,
        iterators: dict | None = None,
        score: float | None = None,
    ) -> None:
        """Saves step ``step`` (replacing it if present): ``arrays`` {item: pytree}, ``json`` {item: dict},
        ``iterators`` {item: grain iterator}."""
        items = {name: ocp.args.StandardSave(tree) for name, tree in (arrays or {}).items()}
        items.update({name: ocp.args.JsonSave(value) for name, value in (json or {}).items()})
        if iterators:
            import grain

            items.update({name: grain.checkpoint.CheckpointSave(it) for name, it in iterators.items()})
        self._manager.save(
            step, args=ocp.args.Composite(**items), force=True, metrics=None if score is None else {SCORE: float(score)}
        )
        if not self.asynchronous:
            self._manager.wait_until_finished()

    def restore(
        self,
        step: int,
        *,
        arrays: dict | None = None,
        json: tuple = (),
        iterators: dict | None = None,
        hint: str = "the checkpoint is damaged or was written with other settings: use a new directory",
    ):
        """{item: value} of step ``step``.

        ``arrays`` {item: target}: each restored into the shapes of its target (`abstract_like`), or as saved
        when the target is None; ``json``: names of JSON items; ``iterators`` {item: grain iterator}, each set
        to its saved position in place. Any failure raises `CheckpointError` naming the step and ``hint``.
        """
        items = {
            name: ocp.args.StandardRestore(None if like is None else abstract_like(like))
            for name, like in (arrays or {}).items()
        }
        items.update({name: ocp.args.JsonRestore() for name in json})
        if iterators:
            import grain

            items.update({name: grain.checkpoint.CheckpointRestore(it) for name, it in iterators.items()})
        with failures_as_checkpoint_error(f"cannot restore step {step} of {self.directory}", hint):
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
            for name, like in (arrays or {}).items():
                if like is not None:
                    require_shapes(restored[name], like)
        return {name: restored[name] for name in items}

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

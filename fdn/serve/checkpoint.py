"""Model checkpoints (what ``fdn.predict`` / ``evaluate`` / ``export`` load) and the training-state checkpoints.

A model checkpoint is a directory::

    DIR/fdn_model.json   what the model is (genotype, decoder settings, task) + metadata (source, counts)
    DIR/variables/       the Flax variables ({'params', 'batch_stats'}) as an Orbax checkpoint

so that ``fdn.predict``, ``fdn.evaluate`` and ``fdn.export`` can rebuild the model from the directory alone.
The Orbax calls themselves, and the translation of a damaged checkpoint into a `CheckpointError`, are
`fdn.checkpointing`'s.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np

from fdn import checkpointing
from fdn.checkpointing import CheckpointError  # noqa: F401  (public here: callers catch checkpoint.CheckpointError)
from fdn.models import names as N
from fdn.models.segmenter import ModelSpec, abstract_variables, param_counts

SPEC_FILE = "fdn_model.json"
VARIABLES_DIR = "variables"
FORMAT_VERSION = 1


def save_model(directory, variables, spec: ModelSpec, metadata: dict | None = None, overwrite: bool = False):
    """Writes ``variables`` and ``spec`` to ``directory`` (absolute or relative path)."""
    directory = Path(directory).absolute()
    if directory.exists():
        if not overwrite:
            raise CheckpointError(f"{directory} already exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    variables = jax.tree.map(np.asarray, dict(variables))
    checkpointing.save_tree(directory / VARIABLES_DIR, variables)
    info = {
        "format_version": FORMAT_VERSION,
        "model": spec.to_dict(),
        "param_counts": param_counts(variables[N.PARAMS]),
        "metadata": metadata or {},
    }
    tmp = directory / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, directory / SPEC_FILE)  # the json appears last: a checkpoint without it is incomplete
    return directory


def read_spec(directory) -> tuple[ModelSpec, dict]:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"no checkpoint directory at {directory}; give an fdn checkpoint directory (fdn.train writes "
            "WORKDIR/best_model and WORKDIR/final_model; python -m fdn.convert makes one from an official .pth)"
        )
    spec_file = directory / SPEC_FILE
    if not spec_file.is_file():
        raise CheckpointError(
            f"{directory} is not a complete fdn checkpoint: {SPEC_FILE} is missing (an interrupted save, or a "
            "directory of another tool; official .pth files must first go through `python -m fdn.convert`)"
        )
    try:
        info = json.loads(spec_file.read_text())
        spec = ModelSpec.from_dict(info["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{spec_file} is corrupt ({type(err).__name__}: {err}); use another checkpoint, or "
            "save, train or convert it again; nothing was changed"
        ) from None
    return spec, info


def load_model(directory) -> tuple[ModelSpec, dict, dict]:
    """``(spec, variables, info)`` of a checkpoint written by ``save_model``."""
    directory = Path(directory).absolute()
    spec, info = read_spec(directory)
    var_dir = directory / VARIABLES_DIR
    if not var_dir.is_dir():
        raise CheckpointError(
            f"{directory} is incomplete: the variables directory {var_dir} is missing; use another checkpoint, or "
            "save, train or convert it again"
        )
    variables = checkpointing.restore_tree(
        var_dir,
        abstract_variables(spec),
        what=f"cannot restore the variables in {var_dir} for the model described in {SPEC_FILE} ({spec.genotype})",
        hint="the checkpoint is damaged or its json describes another model: use another checkpoint (fdn.train "
        "writes best_model and final_model), or save, train or convert it again; nothing was changed",
    )
    return spec, variables, info


# ------------------------------------------------------------------------------------------ training state
class TrainCheckpoints:
    """``WORKDIR/checkpoints``: full training states, the latest and the best (`fdn.checkpointing.StepManager`).

    Each step directory holds ``state`` (params, batch stats, optimiser state, Polyak average, step), ``data``
    (the grain iterator, per host) and ``extra`` (JSON: epoch, best score, ...). A save with ``score`` (after
    an evaluation) takes part in the best-of ranking; the latest save is always kept, so resuming continues
    from it and the best one survives until a better one comes. Saves are asynchronous: `wait` before exit.
    """

    def __init__(self, directory):
        self.steps = checkpointing.StepManager(directory, keep_latest=1, keep_best=True, asynchronous=True)
        self.directory = self.steps.directory

    def save(self, step: int, state, iterator, extra: dict, score: float | None = None) -> None:
        self.steps.save(step, arrays={"state": state}, json={"extra": extra}, iterators={"data": iterator}, score=score)

    def latest_step(self) -> int | None:
        return self.steps.latest_step()

    def restore(self, step: int, abstract_state=None, iterator=None):
        """``(state, extra)`` of ``step``; ``iterator`` (if given) is set to the saved position in place.

        Without ``abstract_state`` the state comes back as saved (host arrays), for inspection.
        """
        restored = self.steps.restore(
            step,
            arrays={"state": abstract_state},
            json=("extra",),
            iterators=None if iterator is None else {"data": iterator},
            hint=f"if it is damaged (a copy or a save cut short), delete {self.directory / str(step)} (nothing "
            "else) and run again to resume from the checkpoint before it, or from the start; if it was "
            "written with another config or genotype, resume with that config or train into a new --workdir",
        )
        return restored["state"], restored["extra"]

    def wait(self) -> None:
        self.steps.wait()

    def close(self) -> None:
        self.steps.close()

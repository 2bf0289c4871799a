"""Every Orbax call of fdn's model checkpoints, in one place.

A model checkpoint is a directory::

    DIR/fdn_model.json   what the model is (genotype, decoder settings, task) + metadata (source, counts)
    DIR/variables/       the Flax variables ({'params', 'batch_stats'}) as an Orbax checkpoint

so that ``fdn.predict``, ``fdn.evaluate`` and ``fdn.export`` can rebuild the model from the directory alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from fdn.models.segmenter import ModelSpec, abstract_variables, param_counts

SPEC_FILE = "fdn_model.json"
VARIABLES_DIR = "variables"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete, corrupt or does not fit its own description."""


def save_model(directory, variables, spec: ModelSpec, metadata: dict | None = None, overwrite: bool = False):
    """Writes ``variables`` and ``spec`` to ``directory`` (absolute or relative path)."""
    directory = Path(directory).absolute()
    if directory.exists():
        if not overwrite:
            raise CheckpointError(f"{directory} already exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    variables = jax.tree.map(np.asarray, dict(variables))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / VARIABLES_DIR, variables)
    checkpointer.wait_until_finished()
    info = {"format_version": FORMAT_VERSION, "model": spec.to_dict(),
            "param_counts": param_counts(variables["params"]), "metadata": metadata or {}}
    tmp = directory / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, directory / SPEC_FILE)  # the json appears last: a checkpoint without it is incomplete
    return directory


def read_spec(directory) -> tuple[ModelSpec, dict]:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory at {directory}")
    spec_file = directory / SPEC_FILE
    if not spec_file.is_file():
        raise CheckpointError(
            f"{directory} is not a complete fdn checkpoint: {SPEC_FILE} is missing (an interrupted save, or a "
            "directory of another tool; official .pth files must first go through `python -m fdn.convert`)")
    try:
        info = json.loads(spec_file.read_text())
        spec = ModelSpec.from_dict(info["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{spec_file} is corrupt: {err}") from None
    return spec, info


def load_model(directory) -> tuple[ModelSpec, dict, dict]:
    """``(spec, variables, info)`` of a checkpoint written by ``save_model``."""
    directory = Path(directory).absolute()
    spec, info = read_spec(directory)
    var_dir = directory / VARIABLES_DIR
    if not var_dir.is_dir():
        raise CheckpointError(f"{directory} is incomplete: the variables directory {var_dir} is missing")
    target = abstract_variables(spec)
    try:
        variables = ocp.StandardCheckpointer().restore(var_dir, target)
    except Exception as err:  # orbax raises many types for damaged files
        raise CheckpointError(
            f"cannot restore the variables in {var_dir} for the model described in {SPEC_FILE} "
            f"({spec.genotype}): {type(err).__name__}: {str(err)[:500]}") from None
    return spec, variables, info


# ------------------------------------------------------------------------------------------ training state
class TrainCheckpoints:
    """``WORKDIR/checkpoints``: full training states (Orbax ``CheckpointManager``), the latest and the best.

    Each step directory holds ``state`` (params, batch stats, optimiser state, Polyak average, step), ``data``
    (the grain iterator, per host) and ``extra`` (JSON: epoch, best score, ...). A save with ``score`` (after
    an evaluation) takes part in the best-of ranking; the latest save is always kept, so resuming continues
    from it and the best one survives until a better one comes.
    """

    def __init__(self, directory):
        from orbax.checkpoint import checkpoint_managers as cm

        policy = cm.AnyPreservationPolicy([
            cm.LatestN(1),
            cm.BestN(get_metric_fn=lambda m: m["score"], n=1, keep_checkpoints_without_metrics=False)])
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True)
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, iterator, extra: dict, score: float | None = None) -> None:
        import grain

        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
                                  extra=ocp.args.JsonSave(extra))
        self.manager.save(step, args=args, metrics=None if score is None else {"score": float(score)}, force=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def restore(self, step: int, abstract_state, iterator):
        """``(state, extra)`` of ``step``; ``iterator`` is set to the saved position in place."""
        import grain

        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                  data=grain.checkpoint.CheckpointRestore(iterator), extra=ocp.args.JsonRestore())
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as err:  # orbax raises many types for damaged or mismatching files
            raise CheckpointError(f"cannot resume from {self.directory} step {step} (a checkpoint of another "
                                  f"config or genotype?): {type(err).__name__}: {str(err)[:500]}") from None
        return restored.state, restored.extra

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

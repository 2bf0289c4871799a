"""Full training of one genotype (``python -m fdn.train``): read top to bottom, in banner sections.

Outputs in ``WORKDIR``: ``config.json``; ``checkpoints/`` (Orbax: the latest and the best full training state
with the data iterator; the same command resumes); ``best_model/`` and ``final_model/`` (fdn model checkpoints
of the Polyak-averaged weights, without auxiliary cells: ``fdn.predict``, ``fdn.evaluate``, ``fdn.export`` and
``fdn.convert`` read them); ``metrics.jsonl`` and ``tensorboard/`` (scalars).

Ctrl-C and SIGTERM (`fdn.interrupts`) stop the run between two steps: the state of the last finished step is
saved (unless that step was just saved), Orbax finishes writing, and `TrainingInterrupted` says at which step.
A step, and a checkpoint save once begun, are never cut. An evaluation is: its step is then saved marked
``pending_eval``, and the resumed run evaluates it first, so the history matches an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from fdn import sharding
from fdn.data import catalog
from fdn.errors import UserError
from fdn.interrupts import Interrupted, StopSignals
from fdn.models import names as N
from fdn.serve import checkpoint as ckpt
from fdn.serve import evaluation, inference
from fdn.train import setup
from fdn.train import step as train_step
from fdn.train.metric_writer import MetricWriter

BEST_MODEL, FINAL_MODEL, CHECKPOINTS = "best_model", "final_model", "checkpoints"


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or infinite: the settings' or the data's fault (learning rates, a corrupt
    image), so a user error (one line, exit 2) whose message names the last good checkpoint."""


class TrainingInterrupted(Interrupted):
    """SIGINT or SIGTERM stopped the run; ``step`` is the step saved for resuming (None: before training)."""

    def __init__(self, signum: int, step: int | None):
        super().__init__(signum)
        self.step = step


def export_variables(params, batch_stats) -> dict:
    """The inference model's variables: the auxiliary cells dropped (the auxiliary classifiers stay, as in the
    released checkpoints; ``param_counts``' ``without_aux`` leaves them out)."""

    def strip(tree):
        tree = jax.tree.map(np.asarray, dict(tree))
        dec = dict(tree[N.DECODER])
        for name in list(dec):
            if N.is_aux_head(name):
                dec[name] = {k: v for k, v in dec[name].items() if k != "aux_cell"}
                if not dec[name]:  # batch stats: nothing left (the classifier has none)
                    del dec[name]
        return {**tree, N.DECODER: dec}

    return {N.PARAMS: strip(params), N.BATCH_STATS: strip(batch_stats)}


def save_model_atomically(directory: Path, variables, spec, metadata) -> None:
    tmp = directory.with_name(directory.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    ckpt.save_model(tmp, variables, spec, metadata)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


@dataclasses.dataclass
class Training:
    """One run's pieces (built once by `prepare`) and where it stands (``state``, ``step``, what is saved)."""

    config: object
    workdir: Path
    log: object
    main_process: bool
    described: setup.Description
    data: setup.Data
    learner: setup.Learner
    mesh: object
    checkpoints: ckpt.TrainCheckpoints
    writer: MetricWriter
    state: dict
    extra: dict
    start_step: int
    step: int = 0
    saved_step: int | None = None  # the last step whose checkpoint save has begun
    evaluated_step: int | None = None  # the last step whose evaluation finished
    scores: dict | None = None
    first_step_seconds: float | None = None
    step_fn: object = None
    eval_fn: object = None

    def result(self) -> dict:
        workdir, total = self.workdir, self.data.total_steps
        return {
            "metrics": self.scores,
            "best_score": self.extra.get("best_score"),
            "best_step": self.extra.get("best_step"),
            "best_model": str(workdir / BEST_MODEL),
            "final_model": str(workdir / FINAL_MODEL),
            "steps": total,
            "first_step_seconds": self.first_step_seconds,
            "start_step": self.start_step,
        }


def run(config, workdir, *, log=print) -> dict:
    """Trains (or resumes) the run in ``workdir``; returns the last evaluation's metrics and the paths.

    SIGINT / SIGTERM raise `TrainingInterrupted` once the current step is saved (see the module docstring).
    """
    workdir = Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    with StopSignals() as stops:
        try:
            training = prepare(config, workdir, log)
        except Interrupted as err:
            raise TrainingInterrupted(err.signum, None) from None
        try:
            train(training, stops)
        except Interrupted as err:
            save_on_interrupt(training, stops)
            raise TrainingInterrupted(err.signum, training.step) from None
        finally:
            training.checkpoints.wait()
            training.writer.close()
    return training.result()


def prepare(config, workdir: Path, log) -> Training:
    """Everything before the first step (`fdn.train.setup`), the state restored from the latest checkpoint."""
    main_process = jax.process_index() == 0
    described = setup.describe(config, workdir)
    mesh = setup.make_mesh(config)
    data = setup.build_data(config, workdir, described.task, log)
    learner = setup.build_learner(config, described, mesh, data.steps_per_epoch)
    checkpoints = ckpt.TrainCheckpoints(workdir / CHECKPOINTS)
    state, extra = setup.initial_state(learner, checkpoints, data.train_iter, mesh, log)
    if main_process:
        setup.record_config(config, workdir, described)
    start_step = int(state["step"])
    writer = MetricWriter(workdir, resume_step=start_step, enabled=main_process)
    repl = sharding.replicated(mesh)
    step_fn = jax.jit(
        train_step.make_train_step(learner.model, learner.tx, config, learner.teacher_model),
        donate_argnums=0,
        out_shardings=(repl, repl),
    )
    eval_fn = jax.jit(
        inference.make_eval_step(
            learner.model, described.task, described.num_classes, bool(config.eval.get("flip_test", False))
        ),
        out_shardings=repl,
    )
    return Training(
        config,
        workdir,
        log,
        main_process,
        described,
        data,
        learner,
        mesh,
        checkpoints,
        writer,
        state,
        extra,
        start_step,
        step=start_step,
        saved_step=start_step,
        scores=extra.get("last_scores"),
        step_fn=step_fn,
        eval_fn=eval_fn,
    )


# ------------------------------------------------------------------------------------------- the steps
def train(t: Training, stops: StopSignals) -> None:
    """The step loop from ``t.start_step`` to the end, then the final model."""
    from tqdm import tqdm

    config, data, described = t.config, t.data, t.described
    total_steps, steps_per_epoch = data.total_steps, data.steps_per_epoch
    t.log(
        f"train: {described.genotype} ({config.genotype}), {described.task}, {total_steps} steps = "
        f"{sum(config.optim.stage_epochs)} epochs x {steps_per_epoch}, global batch {config.data.batch_size} on "
        f"{t.mesh.size} device(s) ({jax.device_count()} in {jax.process_count()} process(es)); workdir {t.workdir}"
    )
    bar = tqdm(
        total=total_steps,
        initial=t.start_step,
        unit="step",
        dynamic_ncols=True,
        disable=not (config.progress and t.main_process),
    )
    window = Window()
    try:
        if t.extra.pop("pending_eval", False):  # interrupted during this step's evaluation: do it now
            evaluate_and_save(t, stops, t.start_step, resave=False)
        for step in range(t.start_step + 1, total_steps + 1):
            with stops.critical():  # never cut a step: its input state is donated to it
                t0 = time.time()
                t.state, metrics = t.step_fn(
                    t.state, sharding.shard_batch(next(data.train_iter), t.mesh), t.learner.teacher_vars
                )
                t.step = step
            window.add(metrics)
            if t.first_step_seconds is None:
                jax.block_until_ready(metrics)
                t.first_step_seconds = time.time() - t0
                window = Window()
                t.log(f"train: first step (compile included) {t.first_step_seconds:.1f} s")
            bar.update(1)
            is_eval = is_eval_step(t, step)
            if window.steps and (step % config.log_every_steps == 0 or is_eval):
                log_window(t, step, window, bar)
                window = Window()
            if is_eval:
                evaluate_and_save(t, stops, step)
            elif config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                check_finite(t, step)
                with stops.critical():
                    save(t, step)
        if t.start_step < total_steps or not (t.workdir / FINAL_MODEL).exists():
            check_finite(t, total_steps)
            export(t, t.workdir / FINAL_MODEL, total_steps, t.scores or {})
    finally:
        bar.close()


def is_eval_step(t: Training, step: int) -> bool:
    """Every ``eval.every_epochs`` epochs and the last step."""
    return step % (int(t.config.eval.every_epochs) * t.data.steps_per_epoch) == 0 or step == t.data.total_steps


class Window:
    """Summed step metrics since the last log line, and since when."""

    def __init__(self):
        self.sums, self.steps, self.start = None, 0, time.time()

    def add(self, metrics):
        self.sums = metrics if self.sums is None else jax.tree.map(lambda a, b: a + b, self.sums, metrics)
        self.steps += 1


def log_window(t: Training, step: int, window: Window, bar) -> None:
    """The window's mean metrics to metrics.jsonl / TensorBoard and a log line."""
    check_finite(t, step)
    means = {k: float(v) / window.steps for k, v in jax.device_get(window.sums).items()}
    means["seconds_per_step"] = (time.time() - window.start) / window.steps
    means["lr_encoder"], means["lr_decoder"] = float(t.learner.enc_lr(step - 1)), float(t.learner.dec_lr(step - 1))
    t.writer.write(step, "train", means)
    bar.set_postfix(loss=f"{means['loss']:.4f}")
    total = t.data.total_steps
    if not bar.disable:
        bar.write(
            f"train: step {step}/{total} epoch {step / t.data.steps_per_epoch:.2f} loss "
            f"{means['loss']:.4f} ({means['seconds_per_step']:.3f} s/step)"
        )
    else:
        t.log(f"train: step {step}/{total} loss {means['loss']:.4f} ({means['seconds_per_step']:.3f} s/step)")


def check_finite(t: Training, step: int) -> None:
    bad = int(t.state["bad_step"])
    if bad:
        t.checkpoints.wait()
        last = t.checkpoints.latest_step()
        raise NonFiniteLossError(
            f"the training loss became NaN/inf at step {bad} (checked at step {step}); nothing was saved "
            f"after it: the last good checkpoint is {'step ' + str(last) if last is not None else 'none'} in "
            f"{t.checkpoints.directory}. Lower the learning rates (config.optim.*_lrs) or check the data"
        )


def save(t: Training, step: int, score: float | None = None, **marks) -> None:
    """Checkpoints the state of ``step`` (asynchronously). Callers hold ``stops.critical()``: not nested here,
    since a nested block would end the caller's protection with its own."""
    t.checkpoints.save(step, t.state, t.data.train_iter, {**t.extra, **marks}, score=score)
    t.saved_step = step


# ------------------------------------------------------------------------------------ evaluate, export
def evaluate_and_save(t: Training, stops: StopSignals, step: int, resave: bool = True) -> None:
    """Scores the Polyak weights, exports the best model, checkpoints ``step`` with its score.

    The pass over the split may be cut by a signal; what follows it (log, export, save) may not. A pending
    evaluation (``resave`` False) finds its step already on disk, which Orbax will not overwrite: its scores
    reach the checkpoints with the next save (that step then does not rank as the best-scoring state).
    """
    check_finite(t, step)
    polyak_vars = {N.PARAMS: t.state["polyak"], N.BATCH_STATS: t.state[N.BATCH_STATS]}
    start = time.time()
    batches = t.data.eval_batches(t.config, t.described.task)
    sums = evaluation.accumulate(t.eval_fn, polyak_vars, batches, t.mesh)
    with stops.critical():
        scores = evaluation.summarise(t.described.task, sums, t.config.eval.omit_classes)
        scores["seconds"] = time.time() - start
        t.writer.write(step, "eval", scores)
        keys = t.described.rules.report_keys
        t.log(
            f"train: eval at step {step} (epoch {step / t.data.steps_per_epoch:.1f}): "
            + ", ".join(f"{k} {scores[k]:.4f}" for k in keys)
            + f" ({scores['seconds']:.1f} s, Polyak weights)"
        )
        t.scores = scores
        best = t.extra.get("best_score")
        if best is None or scores["score"] > best:
            t.extra.update(best_score=scores["score"], best_step=step)
            export(t, t.workdir / BEST_MODEL, step, scores)
        t.extra["last_scores"] = scores
        t.evaluated_step = step
        if resave:
            save(t, step, score=scores["score"])


def save_on_interrupt(t: Training, stops: StopSignals) -> None:
    """After a signal: checkpoint the last finished step unless it was saved, and wait until it is on disk.

    A step that should have been evaluated but was not is marked ``pending_eval`` (evaluated on resume). A
    second signal meanwhile waits for the save and is then ignored: the run is stopping anyway.
    """
    try:
        with stops.critical():
            if t.saved_step != t.step:
                check_finite(t, t.step)  # never checkpoint a non-finite state: report it instead
                pending = {"pending_eval": True} if is_eval_step(t, t.step) and t.evaluated_step != t.step else {}
                save(t, t.step, **pending)
            t.checkpoints.wait()
    except Interrupted:
        t.checkpoints.wait()


def metadata(t: Training, step: int, scores: dict) -> dict:
    config, described = t.config, t.described
    return {
        "source": "fdn.train",
        "dataset": config.data.name,
        "train_split": config.data.train_split,
        "eval_split": config.data.eval_split,
        "data_dir": t.data.data_dir or "",
        "task": described.task,
        "step": step,
        "epoch": step / t.data.steps_per_epoch,
        "metrics": scores,
        "genotype_source": str(config.genotype),
        "class_names": catalog.class_names(config.data.name, described.num_classes, t.data.data_dir),
        "eval": {
            "crop_size": list(np.atleast_1d(config.eval.crop_size).tolist()),
            "min_side": int(config.eval.min_side),
            "batch_size": int(config.eval.batch_size),
            "omit_classes": list(config.eval.omit_classes),
            "flip_test": bool(config.eval.get("flip_test", False)),
            "skeleton": [list(map(int, e)) for e in config.eval.get("skeleton", ())],
        },
        "polyak_decay": float(config.polyak_decay),
    }


def export(t: Training, directory: Path, step: int, scores: dict) -> None:
    if t.main_process:
        save_model_atomically(
            directory,
            export_variables(t.state["polyak"], t.state[N.BATCH_STATS]),
            t.described.export_spec,
            metadata(t, step, scores),
        )

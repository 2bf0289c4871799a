"""What ``fdn.train`` builds before its first step: the model description, the data, the learner, the state.

Each builder is one stage of `fdn.train.loop.run`, in its order; none trains. They are split out so the loop
module holds only what happens per step (train, log, evaluate, save, stop on a signal).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from fdn import genotype as G
from fdn import sharding, tasks
from fdn.data import catalog, pipeline, pose_pipeline
from fdn.errors import InputError
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.init import random_variables
from fdn.models.segmenter import ModelSpec
from fdn.serve import checkpoint as ckpt
from fdn.serve import evaluation
from fdn.train import genotype_source
from fdn.train import step as train_step


@dataclasses.dataclass(frozen=True)
class Description:
    """What is trained: the genotype, the training model (with auxiliary cells) and the exported one."""

    task: str
    rules: tasks.Task
    genotype: G.Genotype
    num_classes: int
    train_spec: ModelSpec
    export_spec: ModelSpec


@dataclasses.dataclass
class Data:
    """The training iterator (its position is checkpointed) and the evaluation split."""

    data_dir: str | None
    train_iter: object
    eval_source: object
    steps_per_epoch: int
    total_steps: int

    def eval_batches(self, config, task):
        return evaluation.eval_batches(
            self.eval_source,
            crop_size=config.eval.crop_size,
            min_side=config.eval.min_side,
            batch_size=config.eval.batch_size,
            task=task,
            num_examples=config.eval.num_examples,
            dataset=config.data.name,
        )


@dataclasses.dataclass
class Learner:
    """The model, its initial variables, the optimiser and learning rates, and the optional teacher."""

    model: object
    variables: dict
    tx: object
    enc_lr: object
    dec_lr: object
    teacher_model: object = None
    teacher_vars: object = None


def describe(config, workdir: Path) -> Description:
    """The task's rules and the two model specs (`record_config` writes them down once the run can start)."""
    task = config.task
    if task not in tasks.NAMES:
        raise InputError(f"config.task must be {' or '.join(tasks.NAMES)}, got {task!r}")
    rules = tasks.get(task)
    genotype = genotype_source.resolve(config.genotype)
    num_classes = rules.head_size(
        rules.fixed_channels or config.model.num_classes or catalog.num_classes_of(config.data, workdir)
    )
    settings = DecoderSettings(num_classes, config.model.agg_size, config.model.repeats, config.model.aux_cell)
    evaluation.check_omit(config.eval.omit_classes, num_classes, "config.eval.omit_classes")  # before training
    train_spec = ModelSpec(genotype, settings, task, config.model.expand_first_block)
    export_spec = dataclasses.replace(train_spec, decoder=dataclasses.replace(settings, aux_cell=False))
    return Description(task, rules, genotype, num_classes, train_spec, export_spec)


def record_config(config, workdir: Path, described: Description) -> None:
    """Writes ``config.json`` (the settings, with the resolved genotype) once the latest checkpoint has been
    restored: a rerun with settings that do not fit the checkpoints fails in the restore, and must leave the
    record of the settings that wrote them as it was."""
    (workdir / "config.json").write_text(
        json.dumps({**config.to_dict(), "resolved_genotype": described.genotype.to_list()}, indent=2, default=str)
    )


def make_mesh(config):
    """The data-parallel mesh, after checking both global batches divide over it."""
    mesh = sharding.make_mesh()
    sharding.check_batch(config.data.batch_size, mesh, "data.batch_size")
    sharding.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    return mesh


def build_data(config, workdir: Path, task: str, log) -> Data:
    """Prepares the dataset if asked, opens both splits and the (seeded, augmenting) training iterator."""
    data_dir = catalog.resolve_data_dir(config.data, workdir)
    catalog.ensure_prepared(config.data, data_dir, log, "train")
    train_source = pipeline.data_source(config.data.name, config.data.train_split, data_dir)
    eval_source = pipeline.data_source(config.data.name, config.data.eval_split, data_dir)
    steps_per_epoch = int(config.optim.steps_per_epoch) or len(train_source) // config.data.batch_size
    if steps_per_epoch < 1:
        raise InputError(
            f"{config.data.name}/{config.data.train_split} has {len(train_source)} images, fewer than "
            f"one batch of {config.data.batch_size}"
        )
    total_steps = int(sum(config.optim.stage_epochs)) * steps_per_epoch
    crop = pose_pipeline.train_crop(config.data.name, config.data.crop_size, config.data.get("crop_width", 0))
    train_iter = iter(
        pipeline.train_dataset(
            train_source,
            crop_size=crop,
            batch_size=config.data.batch_size,
            seed=config.seed,
            min_side=config.data.min_side or max(crop),
            scale_range=tuple(config.data.scale_range),
            task=task,
            worker_count=config.data.worker_count,
            pose=pose_pipeline.person_crops(config.data.name),
        )
    )
    return Data(data_dir, train_iter, eval_source, steps_per_epoch, total_steps)


def build_learner(config, described: Description, mesh, steps_per_epoch: int) -> Learner:
    """Random (seeded) variables, the encoder and teacher checkpoints if given, and the optimiser."""
    train_spec, task, num_classes = described.train_spec, described.task, described.num_classes
    variables = random_variables(train_spec, config.seed)
    if config.encoder.checkpoint:
        enc_spec, enc_vars, _ = ckpt.load_model(Path(config.encoder.checkpoint).expanduser())
        if enc_spec.expand_first_block != train_spec.expand_first_block:
            raise InputError(
                f"the encoder in {config.encoder.checkpoint} has expand_first_block="
                f"{enc_spec.expand_first_block}; config.model says {train_spec.expand_first_block}"
            )
        variables = {c: {**variables[c], N.ENCODER: enc_vars[c][N.ENCODER]} for c in variables}
    teacher_model = teacher_vars = None
    if config.teacher.checkpoint:
        t_spec, teacher_vars, _ = ckpt.load_model(Path(config.teacher.checkpoint).expanduser())
        if t_spec.task != task or t_spec.decoder.num_classes != num_classes:
            raise InputError(
                f"the teacher in {config.teacher.checkpoint} predicts {t_spec.decoder.num_classes} "
                f"{t_spec.task} channels; this run trains {num_classes} {task} channels"
            )
        teacher_model = t_spec.build()
        teacher_vars = sharding.replicate(teacher_vars, mesh)
    tx, (enc_lr, dec_lr) = train_step.make_optimizer(
        config.optim, variables[N.PARAMS], described.genotype, steps_per_epoch, config.data.batch_size
    )
    return Learner(train_spec.build(), variables, tx, enc_lr, dec_lr, teacher_model, teacher_vars)


def initial_state(learner: Learner, checkpoints: ckpt.TrainCheckpoints, train_iter, mesh, log):
    """``(state, extra)``: the latest checkpoint's (and the iterator set to its position), or a fresh state."""
    state = train_step.init_state(learner.tx, learner.variables)
    latest = checkpoints.latest_step()
    if latest is None:
        return sharding.replicate(state, mesh), {"best_score": None, "best_step": None}
    repl = sharding.replicated(mesh)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=repl), state)
    state, extra = checkpoints.restore(latest, abstract, train_iter)
    log(f"train: resumed from step {latest} in {checkpoints.directory}")
    return state, extra

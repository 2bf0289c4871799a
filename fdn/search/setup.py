"""What a search builds once before its first candidate: data, encoder, teacher, stage-1 cache, trainer.

Flow (layout.md): config -> data (meta split, stage-1 crops, stage-2 streams, meta-val batches) -> encoder
(pretrained checkpoint, or random for the demo) -> teacher -> stage-1 cache -> candidate trainers (one per
worker device, sharing the host-side data). Nothing here knows about the controller; `fdn.search.loop` gets
a ready `SearchSetup`.

Stage 2 takes its batches from the candidate's own stream, seeded by (seed, candidate index)
(`fdn.search.parallel.streams`), not from one shared iterator: a candidate's batches then do not depend on
which candidates ran before it, on which worker, or in which session, and there is no iterator state to
checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np

from fdn import tasks
from fdn.candidate import CandidateTrainer, Trainer, TrainerFactory, build_stage1_cache, precision, programs
from fdn.data import catalog, pipeline, split
from fdn.data.device_source import DeviceStage2Source
from fdn.errors import UserError
from fdn.models import depthwise
from fdn.models import names as N
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.init import random_encoder_variables
from fdn.models.segmenter import eval_forward
from fdn.pose import joints
from fdn.search import early_compile
from fdn.search import teacher as teacher_lib
from fdn.search.parallel import streams


class SearchConfigError(UserError, ValueError):
    """A search setting that cannot work with the data it meets."""


@dataclasses.dataclass
class SearchSetup:
    trainer: Trainer  # what trains candidates (fdn.candidate.protocol): the first worker's
    num_classes: int
    seconds: dict  # wall seconds of each set-up phase
    trainers: list = dataclasses.field(default_factory=list)  # one per worker device (trainer is trainers[0])
    devices: list = dataclasses.field(default_factory=list)  # the workers' devices ([None]: the default one)
    early_compile: object = None  # the set-up's compile thread (`fdn.candidate.compiled.BackgroundCompile`) or None

    def close(self) -> None:
        """Waits for a compile the set-up started, if still running (a search that ends before needing it)."""
        if self.early_compile is not None:
            self.early_compile.stop()


def resolve_candidate_config(cc, meta_train_size: int) -> ml_collections.ConfigDict:
    """A copy of the candidate config with ``stage2.steps_per_epoch`` 0 resolved to ``meta-train // batch``.

    The search's stage-2 stream is endless (it repeats meta-train), so "until the iterator ends" (the
    trainer's meaning of <= 0) would never end: 0 means "one pass over meta-train" here, derived from the data
    the search actually has rather than a literal that goes stale with the batch size or the data set.
    """
    resolved = ml_collections.ConfigDict(cc.to_dict())
    steps = resolved.stage2.steps_per_epoch
    if steps < 0:
        raise SearchConfigError(
            f"candidate.stage2.steps_per_epoch={steps}: the search's stage-2 stream never "
            "ends; give a step count, or 0 for len(meta-train) // stage2.batch_size"
        )
    if steps == 0:
        resolved.stage2.steps_per_epoch = max(1, meta_train_size // resolved.stage2.batch_size)
    return resolved


def stage1_cache(config, source, meta_train, enc_vars, teacher_fn):
    """The stage-1 cache (encoder outputs and teacher logits of ``stage1.num_examples`` meta-train crops)."""
    cc = config.candidate
    batches = split.stage1_batches(
        source,
        meta_train,
        cc.stage1.num_examples,
        crop_size=cc.stage1.crop_size,
        seed=config.seed,
        min_side=cc.stage1.min_side,
        scale_range=tuple(config.data.scale_range),
        batch_size=config.data.cache_batch,
        task=search_task(config),
    )
    return build_stage1_cache(
        make_encoder_apply(config),
        enc_vars,
        batches,
        teacher_fn=teacher_fn,
        feature_dtype=cc.stage1.feature_dtype,
        task=search_task(config),
    )


def search_task(config) -> str:
    """What candidates are scored by (`fdn.tasks`): ``config.task``, segmentation where a config has none."""
    return config.get("task", tasks.SEGMENTATION)


def head_size(config, source) -> int:
    """The decoder head's width: the dataset's classes (segmentation) or its joints per image (pose)."""
    task = search_task(config)
    if task == tasks.SEGMENTATION:
        return catalog.num_classes_of(config.data)
    record = source[0]
    if tasks.KEYPOINTS not in record:
        raise SearchConfigError(
            f"task={task!r}: {config.data.name}/{config.data.split} has no keypoints; choose a dataset with "
            "keypoints (fdn_shapes) or task='segmentation'"
        )
    return tasks.get(task).head_size(np.asarray(record[tasks.KEYPOINTS]).shape[0])


def encoder_variables(config, key) -> dict:
    """{'params', 'batch_stats'} of the encoder: from ``config.encoder.checkpoint`` or random (seeded)."""
    if config.encoder.checkpoint:
        from fdn.serve import checkpoint as ckpt

        _, variables, _ = ckpt.load_model(Path(config.encoder.checkpoint).expanduser())
        return {c: variables[c][N.ENCODER] for c in (N.PARAMS, N.BATCH_STATS)}
    return random_encoder_variables(config.encoder.expand_first_block, key)


def calibrate_encoder(config, enc_vars, batches) -> dict:
    """The encoder with its BN running statistics re-estimated on meta-train crops (`fdn.models.bn_calibration`)."""
    from fdn.models.bn_calibration import calibrate_batch_stats

    model = MobileNetV2Encoder(config.encoder.expand_first_block)

    def apply_train(variables, images):
        return model.apply(variables, images, True, mutable=[N.BATCH_STATS])[1][N.BATCH_STATS]

    return calibrate_batch_stats(apply_train, enc_vars, batches, config.encoder.calibrate_batches)


def make_encoder_apply(config) -> Callable:
    model = MobileNetV2Encoder(config.encoder.expand_first_block)
    return jax.jit(lambda variables, images: eval_forward(model, variables, images, with_aux=None))


def val_batches(source, indices, cc, task: str = tasks.SEGMENTATION) -> list[dict]:
    """The meta-val batches, read once (the reward sees the same images, in the same order, every time)."""
    ds = pipeline.eval_dataset(
        source,
        crop_size=cc.val.crop_size,
        batch_size=cc.val.batch_size,
        indices=indices,
        min_side=cc.val.min_side,
        task=task,
        process_index=0,
        process_count=1,
    )
    return list(ds)


def reward_words(task: str, num_classes: int, val: list[dict]) -> str:
    """What the start-up line says of the head and the reward; for pose, how many joints PCK is pooled over
    (the reward moves in steps of one over that many: a few meta-val images give coarse rewards)."""
    if task == tasks.SEGMENTATION:
        return f"{num_classes} classes"
    counted = sum(float(np.sum(tasks.get(task).counted(b))) for b in val)
    return f"{num_classes} joints (reward: PCK@0.5 over {int(counted)} visible joints)"


STAGE2_INPUTS = ("host", "device")


def device_stage2_stream(source, meta_train, cc, config, device):
    """``seed -> iterator`` of stage-2 batches made on ``device`` (`fdn.data.device_source`): meta-train is
    decoded onto it once here, and a candidate's stream is a function of its seed alone, as the host's."""
    made = DeviceStage2Source.build(
        pipeline.Subset(source, meta_train),
        cc.stage2.crop_size,
        min_side=cc.stage2.min_side,
        scale_range=tuple(config.data.scale_range),
        device=device,
    )
    return lambda seed: made.batches(jax.random.key(seed), cc.stage2.batch_size)


SEARCH_TASKS = (tasks.SEGMENTATION, tasks.POSE)  # what a candidate can be scored by (``config.task``)


def resolve_programs(config, device, log=print) -> None:
    """``candidate.programs='auto'`` made concrete for the search's platform (`fdn.candidate.programs.resolve_kind`),
    in ``config`` itself: the search does it before recording its settings, so that the workdir's config and
    checkpoint name the programs that ran (a resume on another kind of machine, where 'auto' would choose
    otherwise, is refused by the settings check instead of silently mixing both); `build` again, for callers that
    skip the loop. A concrete value is left as it is; a misspelled one is a one-line `ProgramsError`."""
    cc = config.candidate
    platform = jax.default_backend() if device is None else device.platform
    work = programs.config_stage1_work(cc.stage1)
    kind = programs.resolve_kind(cc.programs, work, platform)
    if kind != cc.programs:
        log(
            f"search: candidate.programs=auto -> {kind} on {platform} (stage 1: {work:.2g} pixel-examples per "
            "candidate; fdn.candidate.programs)"
        )
        cc.programs = kind


def check_settings(config, num_devices: int) -> None:
    """Settings the search cannot run with, refused before any work (one line each)."""
    if config.num_candidates < 1:  # otherwise minutes of set-up (data, teacher) for a search that does nothing
        raise SearchConfigError(f"num_candidates={config.num_candidates}: a search scores at least 1 candidate")
    task = search_task(config)
    if task not in SEARCH_TASKS:
        raise SearchConfigError(
            f"task={task!r}: the search scores candidates by {' or '.join(SEARCH_TASKS)} (depth is not built "
            "yet); train a found genotype for depth with fdn.train --config=configs/nyud_train.py"
        )
    if joints.is_pose_dataset(config.data.name):
        raise SearchConfigError(
            f"data.name={config.data.name}: the search scores pose on whole-image keypoints only (fdn_shapes: "
            "--config=configs/demo.py:pose), not on person crops yet; train a found genotype on it with fdn.train "
            "--config=configs/mpii_train.py or configs/coco_pose_train.py"
        )
    precision.check(config.candidate.precision)  # before minutes of data and teacher, whatever the programs
    stage2_input = config.candidate.stage2.input
    if stage2_input not in STAGE2_INPUTS:
        raise SearchConfigError(f"candidate.stage2.input={stage2_input!r}: choose one of {', '.join(STAGE2_INPUTS)}")
    if stage2_input == "device" and num_devices > 1:
        raise SearchConfigError(
            "candidate.stage2.input='device' keeps meta-train on one device: use it with parallel.workers=1, or "
            "'host' with several workers"
        )
    if task == tasks.POSE:
        _check_pose(config)


def _check_pose(config) -> None:
    """What a pose search (``task='pose'``) does not have yet, one line each."""
    cc = config.candidate
    if config.teacher.kind != "none":
        raise SearchConfigError(
            f"task='pose' with teacher.kind={config.teacher.kind!r}: the search has no pose teacher (its teachers "
            "give segmentation logits); use --config.teacher.kind=none (no distillation term)"
        )
    if cc.stage2.input != "host":
        raise SearchConfigError(
            "task='pose' with candidate.stage2.input='device': the device crops carry segmentation labels only; "
            "use --config.candidate.stage2.input=host"
        )


def host_stage2_stream(config, cc, source, meta_train, seed):
    """A stage-2 batch stream over meta-train from fdn's host pipeline (grain), seeded by ``seed``."""
    return iter(
        pipeline.train_dataset(
            source,
            crop_size=cc.stage2.crop_size,
            batch_size=cc.stage2.batch_size,
            seed=seed,
            indices=meta_train,
            min_side=cc.stage2.min_side,
            scale_range=tuple(config.data.scale_range),
            task=search_task(config),
            process_index=0,
            process_count=1,
            worker_count=config.data.worker_count,
        )
    )


def make_trainers(config, cc, trainer_factory, devices, num_classes, enc_vars, cache, val, source, meta_train):
    """One trainer per device, sharing the candidates' stage-2 streams (host pipeline or made on the device)."""
    stage2_stream = functools.partial(host_stage2_stream, config, cc, source, meta_train)
    candidate_streams = streams.IndexedStreams(
        stage2_stream
        if cc.stage2.input == "host"
        else device_stage2_stream(source, meta_train, cc, config, devices[0]),
        config.seed,
    )
    return [
        trainer_factory(
            cc,
            num_classes,
            enc_vars,
            cache,
            candidate_streams,
            val,
            expand_first_block=config.encoder.expand_first_block,
            **({} if device is None else {"device": device}),
        )
        for device in devices
    ]


def build(
    config, workdir, *, trainer_factory: TrainerFactory = CandidateTrainer, devices=(None,), log=print
) -> SearchSetup:
    """Everything a search needs before the first candidate, seeded by ``config.seed``; one trainer per entry
    of ``devices`` (`fdn.search.parallel.devices.worker_devices`; None: the default device) from
    ``trainer_factory`` (`fdn.candidate.protocol`: the real ``CandidateTrainer``, or a test's stand-in)."""
    resolve_programs(config, devices[0], log)
    check_settings(config, len(devices))
    seconds = {}
    enc_key, teacher_key = jax.random.split(jax.random.key(config.seed))

    # ---------------------------------------------------------------------------------------- data
    start = time.time()
    data_dir = catalog.resolve_data_dir(config.data, workdir)
    catalog.ensure_prepared(config.data, data_dir, lambda line: print(line, flush=True), "search")
    source = pipeline.data_source(config.data.name, config.data.split, data_dir)
    meta_train, meta_val = split.meta_split(len(source), config.seed, config.data.val_fraction)
    if config.data.val_examples:
        meta_val = meta_val[: config.data.val_examples]
    cc = resolve_candidate_config(config.candidate, len(meta_train))
    task = search_task(config)
    num_classes = head_size(config, source)
    val = val_batches(source, meta_val, cc, task)
    seconds["data"] = time.time() - start
    log(
        f"search: {config.data.name}/{config.data.split}: meta-train {len(meta_train)}, meta-val {len(meta_val)} "
        f"images, {reward_words(task, num_classes, val)}; "
        f"stage 2: {cc.stage2.steps_per_epoch} steps per epoch"
        f"{' (meta-train // batch)' if not config.candidate.stage2.steps_per_epoch else ''}"
    )

    stage2_stream = functools.partial(host_stage2_stream, config, cc, source, meta_train)

    # ------------------------------------------------------------------------------- encoder, teacher
    start = time.time()
    enc_vars = encoder_variables(config, enc_key)
    encoder_apply = make_encoder_apply(config)
    early = early_compile.start(
        config, cc, trainer_factory, encoder_apply, enc_vars, val, devices[0], num_classes, task
    )
    if early is not None:
        log("search: compiling the candidates' programs in the background while the set-up goes on")
    # calibration, teacher and cache run on the default device: fdn's conv forms traced for its platform only
    with early_compile.stopped_on_error(early), depthwise.tracing_for(jax.default_backend()):
        if config.encoder.calibrate_batches:
            enc_vars = calibrate_encoder(config, enc_vars, stage2_stream(config.seed + 2))
            log(f"search: encoder BN statistics re-estimated on {config.encoder.calibrate_batches} meta-train batches")
        teacher_stream = lambda: stage2_stream(config.seed + 1)  # noqa: E731  (its own stream, own seed)
        teacher_fn = teacher_lib.make_teacher_fn(
            config.teacher, workdir, num_classes, teacher_stream, teacher_key, enc_vars
        )
        seconds["teacher"] = time.time() - start

        # ------------------------------------------------------------------------------ stage-1 cache
        start = time.time()
        cache = stage1_cache(config, source, meta_train, enc_vars, teacher_fn)
        seconds["cache"] = time.time() - start
        log(
            f"search: stage-1 cache of {cc.stage1.num_examples} crops in {seconds['cache']:.1f} s"
            f"{' with teacher logits' if teacher_fn else ''}"
        )

        # ----------------------------------------------------------------------------------- trainers
        start = time.time()
        trainers = make_trainers(
            config, cc, trainer_factory, devices, num_classes, enc_vars, cache, val, source, meta_train
        )
        if early is not None and not trainers[0].adopt_programs(early.table):
            early.stop()
            early = None
            log("search: the programs compiled during set-up do not fit the stage-1 cache; compiling them again")
        seconds["trainers"] = time.time() - start
    return SearchSetup(
        trainer=trainers[0],
        num_classes=num_classes,
        seconds=seconds,
        trainers=trainers,
        devices=list(devices),
        early_compile=early,
    )

"""What a search builds once before its first candidate: data, encoder, teacher, stage-1 cache, trainer.

Flow (layout.md): config -> data (meta split, stage-1 crops, stage-2 stream, meta-val batches) -> encoder
(pretrained checkpoint, or random for the demo) -> teacher -> stage-1 cache -> candidate trainer. Nothing
here knows about the controller; `fdn.search.loop` gets a ready `SearchSetup`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fdn.candidate import CandidateTrainer, Trainer, TrainerFactory, build_stage1_cache
from fdn.search import teacher as teacher_lib
from fdn.data import pipeline, split
from fdn.models.encoder import MobileNetV2Encoder


@dataclasses.dataclass
class SearchSetup:
    trainer: Trainer  # what trains candidates (fdn.candidate.protocol)
    num_classes: int
    iterators: dict  # name -> checkpointable grain iterator (their states go into the search checkpoint)
    seconds: dict  # wall seconds of each set-up phase


def resolve_data_dir(config, workdir) -> str | None:
    """``config.data.data_dir``, or ``WORKDIR/data`` when ``auto_prepare`` is on and none is given."""
    if config.data.data_dir:
        return str(Path(config.data.data_dir).expanduser())
    if config.data.auto_prepare:
        return str(Path(workdir) / "data")
    return None


def ensure_prepared(config, data_dir) -> None:
    """Prepares the dataset first if it is missing and ``auto_prepare`` is on (the demo's fdn_shapes)."""
    import tensorflow_datasets as tfds

    import fdn.data  # noqa: F401  (registers the builders)

    if tfds.builder(config.data.name, data_dir=data_dir).is_prepared():
        return
    if not config.data.auto_prepare:
        return  # data_source will raise with the prepare command
    from fdn.data import prepare

    print(f"search: preparing {config.data.name} in {data_dir} (once)", flush=True)
    prepare.prepare(config.data.name, data_dir=data_dir)


def num_classes_of(config) -> int:
    if config.data.num_classes:
        return int(config.data.num_classes)
    import tensorflow_datasets as tfds

    builder = tfds.builder(config.data.name, data_dir=resolve_data_dir(config, "."))
    return int(builder.info.features["segmentation"].num_classes)


def encoder_variables(config, key) -> dict:
    """{'params', 'batch_stats'} of the encoder: from ``config.encoder.checkpoint`` or random (seeded)."""
    if config.encoder.checkpoint:
        from fdn.serve import checkpoint as ckpt

        _, variables, _ = ckpt.load_model(Path(config.encoder.checkpoint).expanduser())
        return {c: variables[c]["encoder"] for c in ("params", "batch_stats")}
    return random_encoder_variables(config.encoder.expand_first_block, key)


def random_encoder_variables(expand_first_block: bool, key) -> dict:
    """A freshly initialised encoder, drawn with NumPy into the shapes Flax would create.

    Same distributions as the layers' own initialisers (conv kernels U(+-1/sqrt(fan_in)) as PyTorch, BN scale
    1 / bias 0, running mean 0 / var 1), but without jitting ``init``: XLA:CPU spends about a minute compiling
    the per-parameter threefry draws of MobileNet-v2's init, and this takes milliseconds.
    """
    model = MobileNetV2Encoder(expand_first_block)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), False))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            bound = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
            return rng.uniform(-bound, bound, leaf.shape).astype(np.float32)
        return (np.ones if name in ("scale", "var") else np.zeros)(leaf.shape, np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def calibrate_encoder(config, enc_vars, batches) -> dict:
    """The encoder with its BN running statistics re-estimated on meta-train crops (`fdn.models.bn_calibration`)."""
    from fdn.models.bn_calibration import calibrate_batch_stats

    model = MobileNetV2Encoder(config.encoder.expand_first_block)

    def apply_train(variables, images):
        return model.apply(variables, images, True, mutable=["batch_stats"])[1]["batch_stats"]

    return calibrate_batch_stats(apply_train, enc_vars, batches, config.encoder.calibrate_batches)


def make_encoder_apply(config) -> Callable:
    model = MobileNetV2Encoder(config.encoder.expand_first_block)
    return jax.jit(lambda variables, images: model.apply(variables, images, False))


def val_batches(source, indices, cc) -> list[dict]:
    """The meta-val batches, read once (the reward sees the same images, in the same order, every time)."""
    ds = pipeline.eval_dataset(source, crop_size=cc.val.crop_size, batch_size=cc.val.batch_size,
                               indices=indices, min_side=cc.val.min_side, process_index=0, process_count=1)
    return list(ds)


def build(config, workdir, *, trainer_factory: TrainerFactory = CandidateTrainer, log=print) -> SearchSetup:
    """Everything a search needs before the first candidate, seeded by ``config.seed``; the trainer comes from
    ``trainer_factory`` (`fdn.candidate.protocol`: the real ``CandidateTrainer``, or a test's stand-in)."""
    cc = config.candidate
    seconds = {}
    key = jax.random.key(config.seed)
    enc_key, teacher_key = jax.random.split(key)

    # ---------------------------------------------------------------------------------------- data
    start = time.time()
    data_dir = resolve_data_dir(config, workdir)
    ensure_prepared(config, data_dir)
    source = pipeline.data_source(config.data.name, config.data.split, data_dir)
    meta_train, meta_val = split.meta_split(len(source), config.seed, config.data.val_fraction)
    if config.data.val_examples:
        meta_val = meta_val[:config.data.val_examples]
    num_classes = config.data.num_classes or num_classes_of(config)
    val = val_batches(source, meta_val, cc)
    seconds["data"] = time.time() - start
    log(f"search: {config.data.name}/{config.data.split}: meta-train {len(meta_train)}, meta-val {len(meta_val)} "
        f"images, {num_classes} classes")

    def stage2_stream(seed):
        return iter(pipeline.train_dataset(
            source, crop_size=cc.stage2.crop_size, batch_size=cc.stage2.batch_size, seed=seed, indices=meta_train,
            min_side=cc.stage2.min_side, scale_range=tuple(config.data.scale_range), process_index=0,
            process_count=1, worker_count=config.data.worker_count))

    # ------------------------------------------------------------------------------- encoder, teacher
    start = time.time()
    enc_vars = encoder_variables(config, enc_key)
    if config.encoder.calibrate_batches:
        enc_vars = calibrate_encoder(config, enc_vars, stage2_stream(config.seed + 2))
        log(f"search: encoder BN statistics re-estimated on {config.encoder.calibrate_batches} meta-train batches")
    teacher_stream = lambda: stage2_stream(config.seed + 1)  # noqa: E731  (its own stream, own seed)
    teacher_fn = teacher_lib.make_teacher_fn(config.teacher, workdir, num_classes, teacher_stream, teacher_key,
                                             enc_vars)
    seconds["teacher"] = time.time() - start

    # ------------------------------------------------------------------------------ stage-1 cache
    start = time.time()
    batches = split.stage1_batches(source, meta_train, cc.stage1.num_examples, crop_size=cc.stage1.crop_size,
                                   seed=config.seed, min_side=cc.stage1.min_side,
                                   scale_range=tuple(config.data.scale_range), batch_size=config.data.cache_batch)
    cache = build_stage1_cache(make_encoder_apply(config), enc_vars, batches, teacher_fn=teacher_fn,
                               feature_dtype=cc.stage1.feature_dtype)
    seconds["cache"] = time.time() - start
    log(f"search: stage-1 cache of {cc.stage1.num_examples} crops in {seconds['cache']:.1f} s"
        f"{' with teacher logits' if teacher_fn else ''}")

    # ----------------------------------------------------------------------------------- trainer
    stage2_iterator = stage2_stream(config.seed)
    trainer = trainer_factory(cc, num_classes, enc_vars, cache, lambda: stage2_iterator, val,
                              expand_first_block=config.encoder.expand_first_block)
    return SearchSetup(trainer=trainer, num_classes=num_classes, iterators={"stage2": stage2_iterator},
                       seconds=seconds)


def restore_iterators(iterators: dict, states: dict) -> None:
    for name, state in states.items():
        if name in iterators:
            pipeline.set_iterator_state(iterators[name], state)


def iterator_states(iterators: dict) -> dict:
    return {name: it.get_state() for name, it in iterators.items()}

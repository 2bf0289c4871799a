"""The data and trainer ``fdn.bench search`` runs candidates on: as a search builds them, minus what only
changes results.

The input pipeline is fdn's own (``fdn.data.pipeline``, ``fdn.data.split``, meta-val read as
``fdn.search.setup.val_batches`` does), over the preset's dataset when it is prepared (``fdn_shapes`` is
prepared on the fly, as the demo does) or over synthetic VOC-sized records otherwise: 64 distinct 500x375
JPEGs with PNG masks, decoded on every access like tfds records, repeated to VOC train_aug's 10,582 records.
Left out because they change rewards but not a step's cost: a pretrained encoder (random, seeded, no BN
calibration) and a trained teacher (where the preset distils, the cache holds zero logits of the right
shape, so the stage-1 program still computes the KD term). A bench that compares rewards (``fdn.bench
precision``) asks for the BN calibration (``calibrate``): without it the random encoder's deep outputs are ~0
and the demo's candidates all score 0.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from fdn.bench.data import SyntheticJpegSource
from fdn.candidate import CandidateTrainer
from fdn.data import catalog, pipeline, split
from fdn.models.init import random_encoder_variables
from fdn.search.setup import calibrate_encoder, host_stage2_stream, stage1_cache, val_batches

VOC_TRAIN_AUG = 10582  # records of the synthetic source (VOC + SBD train_aug)
DEFAULT_DATA_DIR = "~/.cache/fdn/bench_data"  # where an auto-prepared dataset (fdn_shapes) goes


class Cycled:
    """``length`` records that repeat ``source``'s (picklable, for grain workers)."""

    def __init__(self, source, length: int):
        self.source, self.length = source, int(length)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return self.source[int(i) % len(self.source)]


@dataclasses.dataclass
class BenchSetup:
    trainer: CandidateTrainer
    data_name: str  # what the records are, for the output
    seconds: dict  # set-up phases: data, cache, trainer


def open_source(config, data: str, data_dir: str, log=print):
    """(source, name): the preset's prepared dataset or synthetic records (``data`` = auto|prepared|synthetic)."""
    if data != "synthetic":
        dataset_dir = (
            str(Path(data_dir or DEFAULT_DATA_DIR).expanduser()) if config.data.auto_prepare else (data_dir or None)
        )
        catalog.ensure_prepared(config.data, dataset_dir, log, "fdn.bench search")
        try:
            source = pipeline.data_source(config.data.name, config.data.split, dataset_dir)
            return source, f"{config.data.name}/{config.data.split}"
        except FileNotFoundError:
            if data == "prepared":
                raise
            log(f"fdn.bench search: {config.data.name} is not prepared; using synthetic VOC-sized JPEGs")
    return Cycled(SyntheticJpegSource(num=64), VOC_TRAIN_AUG), "synthetic 500x375 JPEG + PNG masks"


def build(config, *, data: str = "auto", data_dir: str = "", calibrate: bool = False, log=print) -> BenchSetup:
    """A ``CandidateTrainer`` on the preset's data shapes, built as ``fdn.search.setup.build`` does; with
    ``calibrate``, the encoder's BN statistics re-estimated as the search does (``encoder.calibrate_batches``)."""
    cc, seconds = config.candidate, {}
    start = time.perf_counter()
    source, name = open_source(config, data, data_dir, log)
    meta_train, meta_val = split.meta_split(len(source), config.seed, config.data.val_fraction)
    meta_val = meta_val[: config.data.val_examples] if config.data.val_examples else meta_val
    num_classes = catalog.num_classes_of(config.data)
    val = val_batches(source, meta_val, cc)
    seconds["data"] = time.perf_counter() - start

    start = time.perf_counter()
    enc_vars = random_encoder_variables(config.encoder.expand_first_block, jax.random.key(config.seed))
    if calibrate and config.encoder.calibrate_batches:  # the search's stream and seed for it
        batches = host_stage2_stream(config, cc, source, meta_train, config.seed + 2)
        enc_vars = calibrate_encoder(config, enc_vars, batches)
    teacher_fn = None
    if config.teacher.kind != "none":

        def teacher_fn(images):
            return jnp.zeros((images.shape[0], images.shape[1] // 4, images.shape[2] // 4, num_classes))

    cache = stage1_cache(config, source, meta_train, enc_vars, teacher_fn)
    jax.block_until_ready(cache.labels)
    seconds["cache"] = time.perf_counter() - start

    start = time.perf_counter()
    stream = iter(
        pipeline.train_dataset(
            source,
            crop_size=cc.stage2.crop_size,
            batch_size=cc.stage2.batch_size,
            seed=config.seed,
            indices=meta_train,
            min_side=cc.stage2.min_side,
            scale_range=tuple(config.data.scale_range),
            process_index=0,
            process_count=1,
            worker_count=config.data.worker_count,
        )
    )
    trainer = CandidateTrainer(
        cc, num_classes, enc_vars, cache, lambda: stream, val, expand_first_block=config.encoder.expand_first_block
    )
    seconds["trainer"] = time.perf_counter() - start
    return BenchSetup(trainer, name, seconds)

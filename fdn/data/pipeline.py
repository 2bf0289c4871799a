"""grain input pipelines over ``tfds.data_source`` records: training stream and one-pass evaluation.

Training (``train_dataset``)::

    records (optionally a subset, e.g. meta-train) -> shuffle(seed) -> repeat (reshuffled every epoch)
      -> [process_index::process_count] -> random_map(TrainTransform, seed) -> batch(drop_remainder)
      -> to_iter_dataset -> mp_prefetch(worker_count)

Every host shuffles with the same seed and takes its own strided slice (disjoint, deterministic). The
augmentation of an element depends only on (seed, position in the stream), not on the number of
workers, so a seed fixes the batches, and ``iterator.get_state()`` / ``set_state()`` resume exactly
(a state belongs to one configuration: restore it into a pipeline with the same ``worker_count``).
Batches are ``{'image': float32 (B, H, W, 3) normalised, 'segmentation': uint8 (B, H, W) 255 = ignore,
'depth': float32 (B, H, W) 0 = invalid}`` (label keys as the task asks), with ``B = batch_size //
process_count`` on each host.

Evaluation (``eval_dataset``) is finite: each host reads a contiguous block of the records, the last batch
is filled up with padding examples (image 0, segmentation 255, depth 0) and every batch carries
``valid`` (B,) bool, so every image is scored exactly once and every host runs the same number of
batches with the same shapes.

Checkpointing the training iterator: ``save_iterator_state`` / ``restore_iterator_state`` write the
grain state as JSON; with Orbax use grain's handler in a composite checkpoint::

    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=grain.checkpoint.CheckpointSave(iterator)))
    mngr.restore(step, args=ocp.args.Composite(state=..., data=grain.checkpoint.CheckpointRestore(iterator)))
"""

import json
import math
from pathlib import Path

import grain
import numpy as np

from fdn import tasks
from fdn.data import augment, pose_pipeline


def data_source(name, split, data_dir=None):
    """``tfds.data_source(name, data_dir)[split]`` with the fdn builders registered; never prepares.

    Raises ``FileNotFoundError`` naming the prepare command when the dataset is not completely prepared
    (tfds itself would return an empty dict for an unprepared dataset), `lookup.UnknownDatasetError` for an
    unknown name or split.
    """
    from fdn.data import lookup

    builder = lookup.builder(name, data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"{name} is not prepared in {builder.data_dir}; run "
            f"python -m fdn.data.prepare {name} --data_dir=... [--manual_dir=...]"
        )
    if split not in builder.info.splits:  # tfds' ValueError would be a traceback
        raise lookup.UnknownDatasetError(
            f"{name} has no split {split!r}; choose one of {', '.join(builder.info.splits)} (a split flag or "
            "config setting, e.g. --split or config.data.eval_split)"
        )
    return builder.as_data_source(split=split)


class Subset:
    """Random-access view of ``source`` restricted to ``indices`` (picklable, for grain workers)."""

    def __init__(self, source, indices):
        self.source = source
        self.indices = np.asarray(indices, np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]


class _Padded:
    """``source`` followed by empty dicts up to ``length`` (the padding slots of the evaluation set).

    Not ``None``: grain treats ``None`` elements as filtered out.
    """

    def __init__(self, source, length):
        self.source = source
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return self.source[i] if i < len(self.source) else {}


def _processes(process_index, process_count):
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    return int(process_index), int(process_count)


def _local_batch(batch_size, process_count):
    if batch_size % process_count:
        raise ValueError(f"batch_size {batch_size} is not divisible by process_count {process_count}")
    return batch_size // process_count


def _records(source, indices):
    return source if indices is None else Subset(source, indices)


def augmented(
    source,
    *,
    crop_size,
    seed,
    indices=None,
    min_side=None,
    scale_range=(0.7, 1.4),
    task=tasks.SEGMENTATION,
    num_epochs=None,
    process_index=0,
    process_count=1,
    pose=None,
):
    """Unbatched ``grain.MapDataset`` of augmented crops: the stream ``train_dataset`` batches.

    ``stage1_subset`` takes its first N elements, so the stage-1 cache and the training stream are
    defined by one piece of code. ``pose`` (a ``pose_pipeline.PoseAugment``) makes them person crops instead.
    """
    records = _records(source, indices)
    if len(records) == 0:
        raise ValueError("no records to train on")
    ds = grain.MapDataset.source(records).shuffle(seed=seed).repeat(num_epochs)
    if process_count > 1:
        ds = ds[process_index::process_count]
    if pose is not None:
        transform = pose_pipeline.PoseTrainTransform(crop_size, pose)
    else:
        transform = augment.TrainTransform(crop_size, min_side=min_side, scale_range=scale_range, task=task)
    return ds.random_map(transform, seed=seed)


def _to_iter(ds, worker_count, read_threads, prefetch_batches):
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches))
    if worker_count > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags (unparsed outside app.run)
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=prefetch_batches)
        )
    return ds


def train_dataset(
    source,
    *,
    crop_size,
    batch_size,
    seed,
    indices=None,
    min_side=None,
    scale_range=(0.7, 1.4),
    task=tasks.SEGMENTATION,
    num_epochs=None,
    process_index=None,
    process_count=None,
    worker_count=0,
    read_threads=2,
    prefetch_batches=2,
    pose=None,
):
    """Endless (or ``num_epochs``) stream of fixed-shape training batches as a ``grain.IterDataset``.

    Args:
      source: a random-access data source (``data_source(name, split, data_dir)``).
      crop_size: int or (H, W) of the crops.
      batch_size: global batch size; each host gets ``batch_size // process_count`` (remainder dropped).
      seed: fixes order and augmentation; the same seed gives the same batches for any worker count.
      indices: optional record indices to draw from (e.g. meta-train of ``split.meta_split``).
      min_side: the paper's R, the minimum shorter side after scaling (default: the larger crop side).
      scale_range: range of the random scale s.
      task: ``'segmentation'``, ``'depth'`` or ``'both'``: which label keys the batches carry.
      num_epochs: ``None`` repeats forever.
      process_index, process_count: per-host sharding; default from ``jax``.
      worker_count: grain worker processes (0 = in this process, with ``read_threads`` threads).
      read_threads, prefetch_batches: per-process reader threads and buffered batches.
      pose: a ``pose_pipeline.PoseAugment`` for person crops of a pose dataset (``pose_pipeline.augment_for``);
        ``min_side``, ``scale_range`` and ``task`` are then unused.

    Returns:
      a ``grain.IterDataset``; ``iter()`` it for a checkpointable ``grain.DatasetIterator``.
    """
    process_index, process_count = _processes(process_index, process_count)
    ds = augmented(
        source,
        crop_size=crop_size,
        seed=seed,
        indices=indices,
        min_side=min_side,
        scale_range=scale_range,
        task=task,
        num_epochs=num_epochs,
        process_index=process_index,
        process_count=process_count,
        pose=pose,
    )
    ds = ds.batch(_local_batch(batch_size, process_count), drop_remainder=True)
    return _to_iter(ds, worker_count, read_threads, prefetch_batches)


def eval_num_batches(num_records, batch_size, process_count=1):
    """Batches each host runs in ``eval_dataset`` (the same on every host)."""
    local = _local_batch(batch_size, process_count)
    return math.ceil(num_records / (local * process_count))


def eval_dataset(
    source,
    *,
    crop_size,
    batch_size,
    indices=None,
    min_side=None,
    task=tasks.SEGMENTATION,
    process_index=None,
    process_count=None,
    worker_count=0,
    read_threads=2,
    prefetch_batches=2,
    pose=None,
):
    """One pass over the records in order, as fixed-shape batches with a ``valid`` (B,) bool mask.

    Shorter side scaled up to ``min_side`` (never down), central ``crop_size`` crop. The records are split
    into ``process_count`` contiguous blocks of ``eval_num_batches * local_batch`` slots; slots past the
    end are padding (``valid`` False, all labels ignore/invalid), so the union over hosts scores every
    record exactly once. ``pose`` (a ``pose_pipeline.PoseAugment``): the person crops of
    ``pose_pipeline.PoseEvalTransform`` instead.
    """
    process_index, process_count = _processes(process_index, process_count)
    local = _local_batch(batch_size, process_count)
    records = _records(source, indices)
    per_host = eval_num_batches(len(records), batch_size, process_count) * local
    padded = _Padded(records, per_host * process_count)
    ds = grain.MapDataset.source(padded)[process_index * per_host : (process_index + 1) * per_host]
    if pose is not None:
        transform = pose_pipeline.PoseEvalTransform(crop_size, pose)
    else:
        like = records[0] if len(records) else None  # shapes of per-example fields for the padding slots
        transform = augment.EvalTransform(crop_size, min_side=min_side, task=task, like=like)
    ds = ds.map(transform).batch(local, drop_remainder=True)
    return _to_iter(ds, worker_count, read_threads, prefetch_batches)


def iterator_state(iterator):
    """The grain iterator state as a JSON string (store it next to the model checkpoint)."""
    return json.dumps(iterator.get_state())


def set_iterator_state(iterator, state):
    """Restore a state from ``iterator_state`` (a JSON string or the dict): continues where it stopped."""
    iterator.set_state(json.loads(state) if isinstance(state, str) else state)
    return iterator


def save_iterator_state(iterator, path):
    """Write ``iterator_state`` to ``path`` atomically (write a temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(iterator_state(iterator))
    tmp.replace(path)


def restore_iterator_state(iterator, path):
    """Read a state written by ``save_iterator_state`` into ``iterator``."""
    return set_iterator_state(iterator, Path(path).read_text())

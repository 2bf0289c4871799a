"""One pass over an evaluation split: sharded eval steps, accumulated sums, metrics; optional pictures.

Shared by ``fdn.train`` (every few epochs, on the Polyak-averaged weights) and ``python -m fdn.evaluate``.
Single scale, no flip: each image is scaled up to ``min_side`` only if shorter (0: never), padded or centrally
cropped to ``crop_size``; padding pixels are ignored (255 / depth 0) and padding images (the last batch's
fill) are masked out by ``valid``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from fdn import sharding, train_step, visualize
from fdn.data import augment, pipeline


def eval_batches(source, *, crop_size, min_side, batch_size, task, num_examples=0):
    indices = None if not num_examples else np.arange(min(num_examples, len(source)))
    crop = tuple(crop_size) if not np.isscalar(crop_size) else (int(crop_size), int(crop_size))
    return pipeline.eval_dataset(source, crop_size=crop, batch_size=batch_size, indices=indices,
                                 min_side=int(min_side), task=task)


def accumulate(eval_fn, variables, batches, mesh, on_batch=None) -> dict:
    """Sum of ``eval_fn(variables, batch)`` over the (host-local) ``batches``, as numpy."""
    total = None
    for i, batch in enumerate(batches):
        sharded = sharding.shard_batch(batch, mesh)
        sums = eval_fn(variables, sharded)
        total = sums if total is None else jax.tree.map(lambda a, b: a + b, total, sums)
        if on_batch is not None:
            on_batch(i, batch, sharded)
    if total is None:
        raise ValueError("the evaluation split is empty")
    return jax.tree.map(np.asarray, jax.device_get(total))


def write_pictures(directory, start: int, batch: dict, prediction: np.ndarray, task: str, limit: int,
                   depth_max: float = 8.0) -> int:
    """Input, ground truth and prediction PNGs of a batch's valid images, numbered from ``start``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for k in range(len(prediction)):
        if start + written >= limit or not batch["valid"][k]:
            continue
        stem = directory / f"{start + written:04d}"
        from PIL import Image

        Image.fromarray(augment.denormalise(np.asarray(batch["image"][k]))).save(f"{stem}_image.png")
        if task == "segmentation":
            visualize.class_map_image(np.asarray(batch["segmentation"][k])).save(f"{stem}_gt.png")
            visualize.class_map_image(prediction[k]).save(f"{stem}_pred.png")
        else:
            visualize.depth_image(np.asarray(batch["depth"][k]), depth_max).save(f"{stem}_gt.png")
            visualize.depth_image(prediction[k], depth_max).save(f"{stem}_pred.png")
        written += 1
    return written


def summarise(task, sums, omit=()):
    return train_step.summarise(task, sums, omit)

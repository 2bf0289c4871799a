"""One pass over an evaluation split: sharded eval steps, accumulated sums, metrics; optional pictures.

Shared by ``fdn.train`` (every few epochs, on the Polyak-averaged weights) and ``python -m fdn.evaluate``.
Single scale, no flip (pose: a flip test when asked): each image is scaled up to ``min_side`` only if shorter
(0: never), padded or centrally cropped to ``crop_size``; padding pixels are ignored (255 / depth 0) and padding
images (the last batch's fill) are masked out by ``valid``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from fdn import sharding, tasks
from fdn.conventions import denormalise
from fdn.data import pipeline, pose_pipeline
from fdn.serve import inference, visualize


def eval_batches(source, *, crop_size, min_side, batch_size, task, num_examples=0, dataset=""):
    """The evaluation batches of ``source``; person crops (``pose_pipeline``) when ``dataset`` is a pose dataset."""
    indices = None if not num_examples else np.arange(min(num_examples, len(source)))
    crop = tuple(crop_size) if not np.isscalar(crop_size) else (int(crop_size), int(crop_size))
    return pipeline.eval_dataset(
        source,
        crop_size=crop,
        batch_size=batch_size,
        indices=indices,
        min_side=int(min_side),
        task=task,
        pose=pose_pipeline.person_crops(dataset),
    )


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


def picture_fn(rules: tasks.Task, depth_max: float, edges=()):
    """``f(values, image) -> PIL image``: class maps in the VOC palette, continuous maps (depth) in 'plasma' over
    [0, depth_max], joints as a skeleton drawn on the image."""
    if rules.picture == tasks.SKELETON:
        return lambda values, image: visualize.skeleton_image(values, image, edges)
    if rules.categorical:
        return lambda values, image: visualize.class_map_image(values)
    return lambda values, image: visualize.depth_image(values, depth_max)


def write_pictures(
    directory,
    start: int,
    batch: dict,
    prediction: np.ndarray,
    task: str,
    limit: int,
    depth_max: float = 8.0,
    edges=(),
) -> int:
    """Input, ground truth and prediction PNGs of a batch's valid images, numbered from ``start``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rules = tasks.get(task)
    picture = picture_fn(rules, depth_max, edges)
    written = 0
    for k in range(len(prediction)):
        if start + written >= limit or not batch["valid"][k]:
            continue
        stem = directory / f"{start + written:04d}"
        from PIL import Image

        image = denormalise(np.asarray(batch["image"][k]))
        Image.fromarray(image).save(f"{stem}_image.png")
        picture(np.asarray(batch[rules.label_key][k]), image).save(f"{stem}_gt.png")
        picture(prediction[k], image).save(f"{stem}_pred.png")
        written += 1
    return written


def summarise(task, sums, omit=()):
    """The task's metrics of accumulated sums (`fdn.tasks`), with ``score`` higher-is-better."""
    return tasks.get(task).summarise(sums, omit)


def crop_of(flag: str | None, saved: dict) -> tuple[int, int]:
    """The evaluation crop: ``--crop`` ('HxW' or 'S'), else the one the checkpoint saved, else 512x512."""
    from fdn.serve.images import parse_hw

    if flag:
        return parse_hw(flag, "--crop", square=True)
    crop = tuple(saved.get("crop_size") or (512, 512))
    return crop * 2 if len(crop) == 1 else crop


def omit_of(flag: list[str] | None, saved: dict, num_classes: int) -> list[int]:
    """Classes left out of the mIoU: ``--omit_classes``, else the checkpoint's (`check_omit`)."""
    if flag is None:
        return check_omit(saved.get("omit_classes", []), num_classes, "the checkpoint's omit_classes")
    return check_omit(flag, num_classes, "--omit_classes")


def check_omit(given, num_classes: int, what: str) -> list[int]:
    """``given`` as class indices of a ``num_classes`` model; a word or an index past the last class was a
    traceback (fdn.evaluate), or silently changed nothing (fdn.train's ``config.eval.omit_classes``)."""
    from fdn.errors import InputError

    try:
        omit = [int(c) for c in given]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be class indices, e.g. 0 or 0,3, got {given!r}") from None
    bad = [c for c in omit if not 0 <= c < num_classes]
    if bad:
        raise InputError(f"{what} {bad}: the model's classes are 0..{num_classes - 1}")
    return omit


def evaluate_checkpoint(
    checkpoint_dir,
    split=None,
    dataset=None,
    data_dir=None,
    crop=None,
    min_side=None,
    batch_size=None,
    num_examples=0,
    omit_classes=None,
    png_dir=None,
    num_png=8,
    depth_max=8.0,
    flip_test=None,
) -> tuple[dict, str]:
    """``(metrics, report text)`` of an fdn checkpoint (``python -m fdn.evaluate``)."""
    from fdn.errors import InputError
    from fdn.serve import checkpoint

    evaluation = sys.modules[__name__]

    spec, variables, info = checkpoint.load_model(checkpoint_dir)
    meta = info.get("metadata", {})
    ev = meta.get("eval", {})
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise InputError(f"{checkpoint_dir} does not say which dataset it was trained on; pass --dataset")
    split = split or meta.get("eval_split") or "val"
    data_dir = data_dir or meta.get("data_dir") or None
    task = spec.task
    crop = crop_of(crop, ev)
    min_side = ev.get("min_side", 0) if min_side is None else min_side
    mesh = sharding.make_mesh()
    batch_size = batch_size or ev.get("batch_size") or 8
    batch_size = -(-batch_size // mesh.size) * mesh.size
    num_classes = spec.decoder.num_classes
    omit = omit_of(omit_classes, ev, num_classes)

    source = pipeline.data_source(dataset, split, data_dir)
    model = spec.build()
    flip_test = bool(ev.get("flip_test", False) if flip_test is None else flip_test)
    if flip_test and not tasks.get(task).flip_test:
        raise InputError(f"--flip_test: {task} models have no flip test ({checkpoint_dir})")
    eval_fn = jax.jit(inference.make_eval_step(model, task, num_classes, flip_test))
    predict = jax.jit(inference.make_predict(model, task)) if png_dir else None
    variables = sharding.replicate(variables, mesh)
    written = [0]

    def pictures(i, batch, sharded):
        if predict is not None and written[0] < num_png:
            pred = np.asarray(predict(variables, sharded["image"]))
            written[0] += evaluation.write_pictures(
                png_dir, written[0], batch, pred, task, num_png, depth_max, ev.get("skeleton", ())
            )

    batches = evaluation.eval_batches(
        source,
        crop_size=crop,
        min_side=min_side,
        batch_size=batch_size,
        task=task,
        num_examples=num_examples,
        dataset=dataset,
    )
    sums = evaluation.accumulate(eval_fn, variables, batches, mesh, on_batch=pictures)
    scores = evaluation.summarise(task, sums, omit)
    n = min(num_examples, len(source)) if num_examples else len(source)
    lines = [
        f"{checkpoint_dir}: {spec.genotype} ({task}) on {dataset}/{split}, {n} images, crop "
        f"{crop[0]}x{crop[1]}, single scale, {'flip test' if flip_test else 'no flip'}"
    ]
    lines += tasks.get(task).report(scores, sums, meta.get("class_names"), omit)
    if png_dir:
        lines.append(f"wrote {written[0]} picture(s) (image, gt, pred) to {png_dir}")
    return scores, "\n".join(lines)

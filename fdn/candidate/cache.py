"""The stage-1 cache: what the search computes once and every candidate's decoder trains on (paper.md 3.2).

For N augmented meta-train crops: the four encoder outputs (encoder in eval mode), the task's targets and, with a
teacher, its logits bilinearly resized to the l1 resolution (1/4 of the crop). Segmentation's targets are the
labels nearest-downsampled to l1; pose's are the crops' ``keypoints`` (N, K, 3) in crop pixels, from which
``fdn.tasks.Pose.loss_terms`` renders the stride-4 heatmaps and target weights inside each step (l1 *is* stride 4
of the crop): a few KB instead of N x h1 x w1 x K floats, and the heatmap rule keeps its one home. All of it stays
on the device; features may be stored in bfloat16 to halve the memory (they are cast back to float32 inside the
step).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from fdn import placement, tasks
from fdn.models.resize import resize_bilinear, resize_nearest


@dataclasses.dataclass
class Stage1Cache:
    """``features``: l1..l4 (N, h_i, w_i, C_i); ``labels``: the targets of ``task`` (segmentation: uint8 (N, h1,
    w1), 255 = ignore; pose: float32 keypoints (N, K, 3) in crop pixels); ``teacher``: float32 (N, h1, w1, K) or
    None."""

    features: tuple
    labels: jax.Array
    teacher: jax.Array | None = None
    task: str = tasks.SEGMENTATION

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])


def _targets(batch, size, task: str):
    """One batch's cached targets (see the module docstring)."""
    if task == tasks.SEGMENTATION:
        return placement.put(resize_nearest(batch[tasks.SEGMENTATION], size), np.uint8)
    if task == tasks.POSE:
        return placement.put(batch[tasks.KEYPOINTS], np.float32)
    raise ValueError(f"build_stage1_cache: no stage-1 targets for the {task} task")


def build_stage1_cache(
    encoder_apply: Callable,
    encoder_variables,
    batches: Iterable[dict],
    teacher_fn: Callable | None = None,
    feature_dtype=jnp.float32,
    task: str = tasks.SEGMENTATION,
) -> Stage1Cache:
    """Run the encoder (and teacher) once over ``batches`` ({'image', 'segmentation'} NumPy dicts, e.g.
    ``fdn.data.split.stage1_batches``; pose: {'image', 'keypoints', ...}) and keep the results on the device.

    ``encoder_apply(encoder_variables, images) -> [l1, l2, l3, l4]`` must run the encoder in eval mode
    (jit it: it is called once per batch). ``teacher_fn(images) -> logits`` (NHWC, any resolution) is
    optional.
    """
    feats, labels, teacher = [[] for _ in range(4)], [], []
    resize_teacher = jax.jit(resize_bilinear, static_argnums=1)
    for batch in batches:
        images = placement.put(batch["image"], np.float32)
        out = encoder_apply(encoder_variables, images)
        for i, f in enumerate(out):
            feats[i].append(f.astype(feature_dtype))
        size = tuple(out[0].shape[1:3])
        labels.append(_targets(batch, size, task))
        if teacher_fn is not None:
            teacher.append(resize_teacher(teacher_fn(images).astype(jnp.float32), size))
    if not labels:
        raise ValueError("build_stage1_cache: no batches")
    return Stage1Cache(
        tuple(jnp.concatenate(f) for f in feats),
        jnp.concatenate(labels),
        jnp.concatenate(teacher) if teacher_fn is not None else None,
        task,
    )


def abstract_stage1_cache(
    encoder_apply: Callable,
    encoder_variables,
    num_examples: int,
    crop_size: int,
    num_classes: int,
    *,
    with_teacher: bool,
    feature_dtype=jnp.float32,
    task: str = tasks.SEGMENTATION,
) -> Stage1Cache:
    """The shapes ``build_stage1_cache`` will give ``num_examples`` crops (fields of ``jax.ShapeDtypeStruct``), known
    before any crop is read or the teacher exists: all that compiling the stage programs ahead needs
    (`fdn.candidate.trainer.CandidateTrainer.compile_early`). Derived from the same functions as the real cache
    (the encoder, ``_targets``); the teacher's logits are assumed to have ``num_classes`` channels, and a trainer
    discards programs compiled for shapes its real cache does not have."""
    images = jax.ShapeDtypeStruct((num_examples, crop_size, crop_size, 3), jnp.float32)
    feats = jax.eval_shape(encoder_apply, encoder_variables, images)
    size = tuple(feats[0].shape[1:3])
    if task == tasks.POSE:
        batch = {tasks.KEYPOINTS: jax.ShapeDtypeStruct((num_examples, num_classes, 3), jnp.float32)}
    else:
        batch = {tasks.SEGMENTATION: jax.ShapeDtypeStruct(images.shape[:3], jnp.uint8)}
    labels = jax.eval_shape(functools.partial(_targets, size=size, task=task), batch)
    teacher = jax.ShapeDtypeStruct((num_examples, *size, num_classes), jnp.float32) if with_teacher else None
    return Stage1Cache(
        tuple(jax.ShapeDtypeStruct(f.shape, jnp.dtype(feature_dtype)) for f in feats), labels, teacher, task
    )

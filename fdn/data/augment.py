"""The paper's augmentations (paper.md 3.1) on NumPy arrays, with PIL for resizing (no cv2, no TF).

Train: s ~ U(0.7, 1.4), raised to ``min_side / shorter_side`` when the scaled shorter side would fall below
``min_side``; image bicubic, segmentation and depth nearest; random mirror; random crop, where an image
smaller than the crop is padded symmetrically (image with the mean, i.e. 0 after normalisation;
segmentation with 255; depth with 0 = invalid). Validation: shorter side scaled *up* to ``min_side``
(never down), central crop with the same padding.

Keypoints (the pose task: ``keypoints`` (K, 3) = x, y, v in pixels with centres at integers) follow the image:
scaled about pixel edges, mirrored as ``x -> W - 1 - x`` with the joints permuted by the record's own
``keypoint_flip`` (left <-> right), shifted by the crop and made invisible (v = 0) outside it;
``keypoint_norm`` scales with the image. (MPII/COCO person crops have their own affine pipeline.)

The transforms are picklable classes (grain ships them to worker processes) and take the random
generator from the caller, so a record's augmentation depends only on (seed, position in the stream).
"""

import numpy as np
from PIL import Image

from fdn import tasks
from fdn.conventions import IGNORE_LABEL, denormalise, normalise  # noqa: F401  (denormalise: public here)

# ``'both'`` is a pipeline mode, not a task: batches that carry the segmentation *and* the depth labels of a
# dataset that has both (NYU-Depth v2), for the data benchmark and the pipeline tests. Task names come from
# ``fdn.tasks``; this tuple only adds the mode.
BOTH = "both"
TASKS = (*tasks.NAMES, BOTH)


def task_keys(task):
    """Label keys a pipeline mode needs: one task's labels (``fdn.tasks``), or segmentation's and depth's."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    names = (tasks.SEGMENTATION, tasks.DEPTH) if task == BOTH else (task,)
    return tuple(key for name in names for key in tasks.get(name).data_keys)


def _pair(size):
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def train_scale(rng, shorter_side, scale_range, min_side):
    """The paper's ResizeScale factor: U(scale_range), but at least ``min_side / shorter_side``."""
    s = rng.uniform(*scale_range)
    if shorter_side * s < min_side:
        s = min_side / shorter_side
    return s


def resize(example, scale):
    """Scale every array of ``example`` by ``scale``: image bicubic, label maps and depth nearest."""
    h, w = example["image"].shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))  # PIL wants (W, H)
    if size == (w, h):
        return dict(example)
    out = dict(example)
    out["image"] = np.asarray(Image.fromarray(example["image"]).resize(size, Image.BICUBIC))
    for key in (tasks.SEGMENTATION, tasks.DEPTH):
        if key in example:
            out[key] = np.asarray(Image.fromarray(example[key]).resize(size, Image.NEAREST))
    if tasks.KEYPOINTS in example:
        sx, sy = size[0] / w, size[1] / h
        kp = np.array(example[tasks.KEYPOINTS], np.float32)
        kp[:, 0] = (kp[:, 0] + 0.5) * sx - 0.5
        kp[:, 1] = (kp[:, 1] + 0.5) * sy - 0.5
        out[tasks.KEYPOINTS] = kp
        out[tasks.KEYPOINT_NORM] = np.float32(example[tasks.KEYPOINT_NORM] * (sx + sy) / 2)
    return out


def mirror(example):
    """Flip every array left-right (keypoints: x mirrored and left/right joints swapped)."""
    out = {
        k: v if k in (tasks.KEYPOINTS, tasks.KEYPOINT_NORM, tasks.KEYPOINT_FLIP) else v[:, ::-1]
        for k, v in example.items()
    }
    if tasks.KEYPOINTS in example:
        kp = np.array(example[tasks.KEYPOINTS], np.float32)
        kp[:, 0] = example["image"].shape[1] - 1 - kp[:, 0]
        out[tasks.KEYPOINTS] = kp[np.asarray(example[tasks.KEYPOINT_FLIP])]
    return out


def _window(length, crop, start):
    """Source and destination slices of a crop of ``crop`` starting at ``start`` (negative = padding)."""
    src0, src1 = max(start, 0), min(start + crop, length)
    return slice(src0, src1), slice(src0 - start, src1 - start)


def crop(example, size, top, left):
    """Crop ``size`` at (top, left); parts outside the array are padded (image 0 after normalising,
    segmentation 255, depth 0). Returns the normalised float32 image and the cropped label maps."""
    ch, cw = size
    h, w = example["image"].shape[:2]
    (sy, dy), (sx, dx) = _window(h, ch, top), _window(w, cw, left)
    out = {"image": np.zeros((ch, cw, 3), np.float32)}
    out["image"][dy, dx] = normalise(example["image"][sy, sx])
    if tasks.SEGMENTATION in example:
        out[tasks.SEGMENTATION] = np.full((ch, cw), IGNORE_LABEL, np.uint8)
        out[tasks.SEGMENTATION][dy, dx] = example[tasks.SEGMENTATION][sy, sx]
    if tasks.DEPTH in example:
        out[tasks.DEPTH] = np.zeros((ch, cw), np.float32)
        out[tasks.DEPTH][dy, dx] = example[tasks.DEPTH][sy, sx]
    if tasks.KEYPOINTS in example:
        kp = np.array(example[tasks.KEYPOINTS], np.float32).reshape(-1, 3)
        kp[:, 0] -= left
        kp[:, 1] -= top
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= cw - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= ch - 1)
        kp[:, 2] = np.where(inside, kp[:, 2], 0.0)
        out[tasks.KEYPOINTS] = kp
        out[tasks.KEYPOINT_NORM] = np.float32(example[tasks.KEYPOINT_NORM])
        out[tasks.KEYPOINT_FLIP] = np.asarray(example[tasks.KEYPOINT_FLIP], np.int32)
    return out


def _offset(rng, length, crop_len):
    """Random crop start; centred (negative) padding where the array is shorter than the crop."""
    if length >= crop_len:
        return int(rng.integers(0, length - crop_len + 1)) if rng is not None else (length - crop_len) // 2
    return -((crop_len - length) // 2)


def select(record, keys):
    """The arrays of a data-source record that a task needs, with a clear error if one is missing."""
    example = {"image": np.asarray(record["image"])}
    for key in keys:
        if key not in record:
            raise KeyError(f"the dataset has no {key!r} (it has {sorted(record)}); choose another task")
        example[key] = np.asarray(record[key])
    return example


def scale_range_of(value) -> tuple[float, float]:
    """``(low, high)`` of the ``data.scale_range`` setting, 0 < low <= high; anything else failed later inside a
    grain worker (a traceback, after the data and the teacher were ready)."""
    from fdn.errors import InputError

    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"data.scale_range must be two numbers (low, high), e.g. (0.5, 2.0), got {value!r}") from None
    if not 0 < low <= high:
        raise InputError(f"data.scale_range {value!r}: need 0 < low <= high, e.g. (0.5, 2.0)")
    return low, high


class TrainTransform:
    """Record -> augmented, normalised crop (a grain random-map callable: ``fn(record, rng)``)."""

    def __init__(self, crop_size, min_side=None, scale_range=(0.7, 1.4), task=tasks.SEGMENTATION):
        self.crop_size = _pair(crop_size)
        self.min_side = max(self.crop_size) if min_side is None else int(min_side)
        self.scale_range = scale_range_of(scale_range)
        self.keys = task_keys(task)

    def __call__(self, record, rng):
        example = select(record, self.keys)
        h, w = example["image"].shape[:2]
        example = resize(example, train_scale(rng, min(h, w), self.scale_range, self.min_side))
        if rng.integers(2):
            example = mirror(example)
        h, w = example["image"].shape[:2]
        top, left = _offset(rng, h, self.crop_size[0]), _offset(rng, w, self.crop_size[1])
        return crop(example, self.crop_size, top, left)


class EvalTransform:
    """Record -> shorter side up to ``min_side`` (no down-scaling), central crop, normalised.

    An empty record (a padding slot of the last batch) becomes an all-ignore example; every output has
    ``valid`` telling the two apart so that each real image is scored exactly once.
    """

    def __init__(self, crop_size, min_side=None, task=tasks.SEGMENTATION, like=None):
        """``like``: a real record, whose per-example fields (keypoints) give the padding slots their shapes."""
        self.crop_size = _pair(crop_size)
        self.min_side = max(self.crop_size) if min_side is None else int(min_side)
        self.keys = task_keys(task)
        fixed = [k for k in self.keys if k not in (tasks.SEGMENTATION, tasks.DEPTH)]
        self.fixed = {k: (np.shape(like[k]), np.asarray(like[k]).dtype) for k in fixed} if like else {}

    def __call__(self, record):
        if not record:
            empty = {k: np.zeros((0, 0), np.uint8 if k == tasks.SEGMENTATION else np.float32) for k in self.keys}
            empty.update({k: np.zeros(shape, dtype) for k, (shape, dtype) in self.fixed.items()})
            out = crop({"image": np.zeros((0, 0, 3), np.uint8), **empty}, self.crop_size, 0, 0)
            out["valid"] = np.bool_(False)
            return out
        example = select(record, self.keys)
        h, w = example["image"].shape[:2]
        if min(h, w) < self.min_side:
            example = resize(example, self.min_side / min(h, w))
        h, w = example["image"].shape[:2]
        out = crop(example, self.crop_size, _offset(None, h, self.crop_size[0]), _offset(None, w, self.crop_size[1]))
        out["valid"] = np.bool_(True)
        return out

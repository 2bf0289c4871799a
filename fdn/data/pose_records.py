"""The record format the pose builders share, and their error for a malformed annotation file.

One record per person (as SimpleBaseline's datasets): the whole image (the original JPEG bytes) plus the person's
``keypoints`` (K, 3) float32, x and y in 0-based image pixels (pixel centres at integers) and v in {0, 1} (1 =
labelled; COCO's v = 1 "labelled, occluded" and v = 2 "visible" are both 1, as SimpleBaseline's loader), zeros
where a joint is not labelled; ``box_center`` (2,) and ``box_size`` (2,) = (w, h), the person box in image
pixels before the crop's aspect fix and 1.25 enlargement (``fdn.data.pose_pipeline`` applies both);
``keypoint_norm`` the PCK normaliser in image pixels (MPII: 0.6 x head-box diagonal; COCO: sqrt(area); 0 where
unknown, e.g. MPII's converted training annotations have no head boxes); ``area`` (COCO's segment area, the OKS
scale; 0 for MPII); ``image_id`` the file stem (``str``, as every fdn dataset) and ``person_id`` (COCO's
annotation id; MPII's index in the split's annotation list, for ``valid`` the column of ``gt_valid.mat``).

Storing the image with each person repeats images that show several people (COCO train2017: about 150k persons
in 57k images); in exchange any record is one random read, which grain needs.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import features
from fdn.errors import UserError


class AnnotationError(UserError, ValueError):
    """A pose annotation file that cannot be read as its format: the message names the file and the field."""


def spec(num_joints: int) -> tfds.features.FeaturesDict:
    """The features of a pose record with ``num_joints`` joints."""
    return tfds.features.FeaturesDict(
        {
            "image": features.image("jpeg"),
            "image_id": features.image_id(),
            "person_id": tfds.features.Scalar(dtype=np.int64),
            "keypoints": tfds.features.Tensor(shape=(num_joints, 3), dtype=np.float32),
            "box_center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "box_size": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "keypoint_norm": tfds.features.Scalar(dtype=np.float32),
            "area": tfds.features.Scalar(dtype=np.float32),
        }
    )


def image_bytes(path):
    """The JPEG's bytes, or an RGB PIL image where it is not RGB (grey or CMYK JPEGs would decode to other shapes)."""
    with Image.open(path) as image:
        if image.mode != "RGB":
            return image.convert("RGB")
    with open(path, "rb") as f:
        return f.read()


def record(image, image_id, person_id, keypoints, center, size, keypoint_norm=0.0, area=0.0):
    """One pose example as the builders yield it (arrays cast to the record's dtypes)."""
    keypoints = np.asarray(keypoints, np.float32).copy()
    keypoints[keypoints[:, 2] <= 0] = 0.0  # unlabelled joints carry no position
    return {
        "image": image,
        "image_id": str(image_id),
        "person_id": int(person_id),
        "keypoints": keypoints,
        "box_center": np.asarray(center, np.float32),
        "box_size": np.asarray(size, np.float32),
        "keypoint_norm": np.float32(keypoint_norm),
        "area": np.float32(area),
    }


def field(entry, key, where, path):
    """``entry[key]``, or an ``AnnotationError`` naming ``path``, the entry and the missing field."""
    try:
        return entry[key]
    except (KeyError, TypeError, IndexError):
        raise AnnotationError(f"{path}: {where} has no field {key!r}; is this the right annotation file?") from None


def numbers(value, shape, what, where, path) -> np.ndarray:
    """``value`` as a float64 array of ``shape``, or an ``AnnotationError`` naming the field and what it holds."""
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != tuple(shape) or not np.isfinite(array).all():
        got = "not numbers" if array is None else f"shape {array.shape}"
        raise AnnotationError(f"{path}: {where}: field {what!r} must be {tuple(shape)} finite numbers, got {got}")
    return array

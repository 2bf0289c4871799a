"""``mpii_human_pose``: MPII Human Pose, one record per annotated person (16 joints), the format of
``fdn.data.pose_records``.

Manual directory (``--manual_dir``), either form::

    MANUAL/images/*.jpg                        mpii_human_pose_v1.tar.gz (the images)
    MANUAL/annot/train.json, valid.json        SimpleBaseline's converted annotations (Tompson's split)
    MANUAL/annot/gt_valid.mat                  the validation ground truth (joints, missing flags, head boxes)
  or
    MANUAL/images/*.jpg
    MANUAL/mpii_human_pose_v1_u12_1.mat        the official annotations (mpii_human_pose_v1_u12_2.zip; also found
                                               under mpii_human_pose_v1_u12_2/)

The JSON form gives splits ``train`` (22,246 persons) and ``valid`` (2,958); ``valid`` takes its joints, their
visibility (1 - ``jnt_missing``) and the head sizes from ``gt_valid.mat``, the file SimpleBaseline's PCKh is
scored against. ``train`` has no head boxes (``keypoint_norm`` 0). The official ``.mat`` has no validation split:
it gives ``trainval``, every person with joint annotations in a training image (``img_train``), with head sizes
from each person's head rectangle (x1, y1, x2, y2); for Tompson's validation split use the JSON form. A joint's
``v`` is 1 when it is annotated (the release's ``is_visible`` flag, often empty, is not used: SimpleBaseline's
``joints_vis`` also means "annotated"); rectangles without joints, position or scale are skipped.

As SimpleBaseline's loader: the person centre moves down by 15 x scale (``c[1] += 15 * s``) and the box is
200 x scale pixels square (the 1.25 enlargement is the pipeline's), and MATLAB's 1-based coordinates become
0-based (``- 1`` on the centre and the joints). Joint order: ``fdn.pose.joints.MPII``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from absl import logging

from fdn.data import base, pose_records
from fdn.pose import joints

NUM_JOINTS = joints.MPII.num_joints
PIXEL_STD = 200.0  # MPII's ``scale`` is the person's height in units of 200 pixels
CENTER_SHIFT = 15.0  # SimpleBaseline moves the centre down by 15 x scale (towards the body's middle)
IMAGES_URL = "https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz"
OFFICIAL_URL = "https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1_u12_2.zip"
JSON_URL = "https://github.com/microsoft/human-pose-estimation.pytorch (README, Data preparation: annot/)"
OFFICIAL_MAT = "mpii_human_pose_v1_u12_1.mat"
HOW = (
    f"images/ from {IMAGES_URL} and either annot/{{train,valid}}.json + annot/gt_valid.mat ({JSON_URL}) "
    f"or {OFFICIAL_MAT} ({OFFICIAL_URL})"
)


def person_box(center, scale):
    """SimpleBaseline's adjusted centre (0-based) and the square box (w, h) of an MPII ``center`` / ``scale``."""
    center = np.array(center, np.float64)
    if center[0] != -1:
        center[1] += CENTER_SHIFT * scale
    return center - 1.0, np.array([PIXEL_STD * scale, PIXEL_STD * scale])


def head_size(headbox) -> float:
    """The PCKh normaliser of a head box ((x1, y1), (x2, y2)): 0.6 x its diagonal."""
    headbox = np.asarray(headbox, np.float64).reshape(2, 2)
    return float(joints.PCKH_HEAD_SIZE_FACTOR * np.linalg.norm(headbox[1] - headbox[0]))


def _load_json(path):
    try:
        entries = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise pose_records.AnnotationError(f"{path}: not valid JSON ({e}); download it again ({JSON_URL})") from None
    if not isinstance(entries, list):
        raise pose_records.AnnotationError(f"{path}: expected a list of person entries, got {type(entries).__name__}")
    return entries


def read_json(path):
    """Persons of a converted annotation file: ``[(image name, centre, box size, keypoints (16, 3))]``, 0-based."""
    persons = []
    for index, entry in enumerate(_load_json(path)):
        where = f"entry {index}"
        name = pose_records.field(entry, "image", where, path)
        scale = float(pose_records.numbers(pose_records.field(entry, "scale", where, path), (), "scale", where, path))
        center = pose_records.numbers(pose_records.field(entry, "center", where, path), (2,), "center", where, path)
        xy = pose_records.numbers(
            pose_records.field(entry, "joints", where, path), (NUM_JOINTS, 2), "joints", where, path
        )
        vis = pose_records.numbers(
            pose_records.field(entry, "joints_vis", where, path), (NUM_JOINTS,), "joints_vis", where, path
        )
        center, size = person_box(center, scale)
        keypoints = np.concatenate([xy - 1.0, (vis > 0)[:, None]], axis=1)
        persons.append((str(name), center, size, keypoints))
    return persons


def read_gt_valid(path):
    """(joints (N, 16, 2) 0-based, visible (N, 16) bool, head sizes (N,)) of ``gt_valid.mat``."""
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as e:
        raise pose_records.AnnotationError(f"{path}: not a readable MATLAB file ({e})") from None
    for key in ("pos_gt_src", "jnt_missing", "headboxes_src"):
        if key not in mat:
            raise pose_records.AnnotationError(f"{path}: no field {key!r}; expected SimpleBaseline's gt_valid.mat")
    pos, missing, heads = (np.asarray(mat[k], np.float64) for k in ("pos_gt_src", "jnt_missing", "headboxes_src"))
    n = pos.shape[-1] if pos.ndim == 3 else -1
    if pos.shape != (NUM_JOINTS, 2, n) or missing.shape != (NUM_JOINTS, n) or heads.shape != (2, 2, n):
        raise pose_records.AnnotationError(
            f"{path}: fields pos_gt_src {pos.shape}, jnt_missing {missing.shape}, headboxes_src {heads.shape} are "
            f"not (16, 2, N), (16, N), (2, 2, N)"
        )
    sizes = joints.PCKH_HEAD_SIZE_FACTOR * np.linalg.norm(heads[1] - heads[0], axis=0)
    return pos.transpose(2, 0, 1) - 1.0, missing.T == 0, sizes


def _items(value):
    """A MATLAB struct array read with ``squeeze_me``: one struct, an array of them, or empty -> a list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _scalar(value):
    """A MATLAB scalar field as float, None when it is empty (the release leaves some fields empty)."""
    array = np.asarray(value).ravel()
    return None if array.size == 0 else float(array[0])


def read_official(path):
    """Persons of the official ``.mat`` in training images with joint annotations (as ``read_json``, plus head
    sizes): ``[(image name, centre, box size, keypoints (16, 3), head size)]``, 0-based."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (ValueError, OSError, TypeError) as e:
        raise pose_records.AnnotationError(
            f"{path}: not a readable MATLAB file ({e}); download {OFFICIAL_URL}"
        ) from None
    release = pose_records.field(mat, "RELEASE", "the file", path)
    try:
        annolist, img_train = _items(release.annolist), np.asarray(release.img_train).ravel()
    except AttributeError as e:
        raise pose_records.AnnotationError(f"{path}: RELEASE lacks a field ({e}); download {OFFICIAL_URL}") from None
    if len(annolist) != len(img_train):
        raise pose_records.AnnotationError(f"{path}: RELEASE.annolist and RELEASE.img_train differ in length")
    persons, skipped = [], 0
    for i, (entry, train) in enumerate(zip(annolist, img_train)):
        if not train:
            continue
        where = f"RELEASE.annolist({i + 1})"
        try:
            name = str(entry.image.name)
            rects = _items(getattr(entry, "annorect", None))
        except AttributeError as e:
            raise pose_records.AnnotationError(f"{path}: {where}: missing field ({e})") from None
        for r, rect in enumerate(rects):
            points = _items(getattr(getattr(rect, "annopoints", None), "point", None))
            objpos = getattr(rect, "objpos", None)
            scale = _scalar(getattr(rect, "scale", []))
            if not points or scale is None or not hasattr(objpos, "x"):
                skipped += 1  # a person without joint annotations, or without the position and scale of a person
                continue
            try:
                center = (float(objpos.x), float(objpos.y))
                headbox = [_scalar(getattr(rect, key)) for key in ("x1", "y1", "x2", "y2")]
                if None in headbox:
                    raise ValueError("the head rectangle x1, y1, x2, y2 is empty")
                keypoints = np.zeros((NUM_JOINTS, 3))
                for point in points:
                    k = int(point.id)
                    if not 0 <= k < NUM_JOINTS:
                        raise ValueError(f"joint id {k} outside 0..15")
                    keypoints[k] = (float(point.x) - 1.0, float(point.y) - 1.0, 1.0)
            except (AttributeError, TypeError, ValueError) as e:
                raise pose_records.AnnotationError(f"{path}: {where}.annorect({r + 1}): malformed ({e})") from None
            center, size = person_box(center, scale)
            persons.append((name, center, size, keypoints, head_size(headbox)))
    logging.info(
        "%s: %d annotated persons in training images, %d rectangles without joints skipped", path, len(persons), skipped
    )
    return persons


def find_official(root):
    """The official ``.mat`` under ``root`` (top level or its zip's folder), else None."""
    return base.first_existing([root / OFFICIAL_MAT, root / "mpii_human_pose_v1_u12_2" / OFFICIAL_MAT])


def plan(root):
    """``{split: [(image path, image_id, person_id, keypoints, centre, size, head size)]}``, every file checked."""
    root = Path(root)
    images = root / "images"
    annot = root / "annot"
    if (annot / "train.json").exists() or (annot / "valid.json").exists():
        train = read_json(base.require(annot / "train.json", "MPII converted train annotations", HOW))
        valid = read_json(base.require(annot / "valid.json", "MPII converted valid annotations", HOW))
        gt_path = base.require(annot / "gt_valid.mat", "MPII validation ground truth", HOW)
        pos, visible, sizes = read_gt_valid(gt_path)
        if len(pos) != len(valid):
            raise pose_records.AnnotationError(
                f"{gt_path}: {len(pos)} persons, but {annot / 'valid.json'} has {len(valid)}; use the pair that "
                "came together"
            )
        splits = {
            "train": [(name, c, s, kp, 0.0) for name, c, s, kp in train],
            "valid": [
                (name, c, s, np.concatenate([pos[i], visible[i][:, None]], axis=1), sizes[i])
                for i, (name, c, s, _) in enumerate(valid)
            ],
        }
    else:
        official = find_official(root)
        if official is None:
            raise base.ManualDataError(
                f"missing MPII annotations: expected {annot / 'train.json'} or {root / OFFICIAL_MAT}\n  {HOW}"
            )
        splits = {"trainval": read_official(official)}
    out = {}
    for split, persons in splits.items():
        out[split] = []
        for index, (name, center, size, keypoints, norm) in enumerate(persons):
            path = base.require(images / name, f"image {name} of split {split}", HOW)
            out[split].append((path, Path(name).stem, index, keypoints, center, size, norm))
    return out


class MpiiHumanPose(base.ArrayRecordBuilder):
    """Builder of ``mpii_human_pose`` (see the module docstring for the manual directory)."""

    name = "mpii_human_pose"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One record per person: JSON form train/valid, official .mat form trainval."}
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW
    HOMEPAGE = "http://human-pose.mpi-inf.mpg.de/"
    # Records in the annotation files' order (person_id order): evaluation reads them in the order of the ground
    # truth (MPII's gt_valid.mat columns); training shuffles in the pipeline anyway.
    KEEP_ORDER = True

    def _features(self):
        return pose_records.spec(NUM_JOINTS)

    def _split_generators(self, dl_manager):
        splits = plan(self._manual_root(dl_manager, HOW))
        return {split: self._generate_examples(items) for split, items in splits.items()}

    def _generate_examples(self, items):
        for path, image_id, person_id, keypoints, center, size, norm in items:
            key = f"{image_id}_{person_id}"
            yield (
                key,
                pose_records.record(
                    pose_records.image_bytes(path), image_id, person_id, keypoints, center, size, keypoint_norm=norm
                ),
            )

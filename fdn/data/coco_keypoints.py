"""``coco_keypoints``: COCO 2017 person keypoints, one record per non-crowd person with at least one labelled
keypoint (17 joints), the format of ``fdn.data.pose_records``.

Manual directory (``--manual_dir``)::

    MANUAL/annotations/person_keypoints_train2017.json   annotations_trainval2017.zip
    MANUAL/annotations/person_keypoints_val2017.json
    MANUAL/train2017/*.jpg, MANUAL/val2017/*.jpg          train2017.zip, val2017.zip

Splits ``train`` and ``val`` (about 150k and 6.4k persons on the real data). As SimpleBaseline's loader: persons
of category 1 only, crowd annotations and persons whose keypoints are all 0 skipped, the box clipped to the image
(``x1 = max(0, x)``, ``x2 = min(width - 1, x1 + max(0, w - 1))``, likewise y; a person whose clipped box is empty or
whose ``area`` is 0 is skipped), the box centre ``(x1 + w / 2, y1 + h / 2)`` of the clipped (w, h). ``keypoint_norm``
is sqrt(area), ``area`` COCO's segment area (the OKS scale), ``person_id`` the annotation id and ``image_id`` the
file stem (``000000000139``; ``int()`` of it is COCO's image id). Joint order: ``fdn.pose.joints.COCO``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from fdn.data import base, pose_records
from fdn.pose import joints

NUM_JOINTS = joints.COCO.num_joints
PERSON = 1
SPLITS = {"train": "train2017", "val": "val2017"}
URL = "https://cocodataset.org/#download"
HOW = (
    f"annotations/person_keypoints_{{train,val}}2017.json (annotations_trainval2017.zip) and "
    f"train2017/, val2017/ (the image zips) from {URL}"
)


def load_annotations(path):
    """The parsed annotation JSON, with ``images`` and ``annotations`` lists checked."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise pose_records.AnnotationError(f"{path}: not valid JSON ({e}); download it again from {URL}") from None
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise pose_records.AnnotationError(
                f"{path}: no {key!r} list; expected a COCO person_keypoints_*.json from {URL}"
            )
    return data


def clean_box(bbox, width, height):
    """SimpleBaseline's clipped box (x1, y1, w, h), or None when it is empty."""
    x, y, w, h = bbox
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1:
        return x1, y1, x2 - x1, y2 - y1
    return None


def read_persons(path):
    """``[(file name, image_id stem, annotation id, keypoints (17, 3), centre, size, area)]`` of ``path``."""
    data = load_annotations(path)
    images = {}
    for i, image in enumerate(data["images"]):
        where = f"images[{i}]"
        key = pose_records.field(image, "id", where, path)
        name = pose_records.field(image, "file_name", where, path)
        size = pose_records.numbers(
            [pose_records.field(image, "width", where, path), pose_records.field(image, "height", where, path)],
            (2,),
            "width/height",
            where,
            path,
        )
        images[key] = (str(name), size)
    persons = []
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if pose_records.field(ann, "category_id", where, path) != PERSON or ann.get("iscrowd", 0):
            continue
        raw = pose_records.numbers(
            pose_records.field(ann, "keypoints", where, path), (NUM_JOINTS * 3,), "keypoints", where, path
        )
        if raw.max() == 0:
            continue  # no labelled keypoint
        image_key = pose_records.field(ann, "image_id", where, path)
        if image_key not in images:
            raise pose_records.AnnotationError(f"{path}: {where}: field 'image_id' {image_key} is not in 'images'")
        name, (width, height) = images[image_key]
        bbox = pose_records.numbers(pose_records.field(ann, "bbox", where, path), (4,), "bbox", where, path)
        area = float(pose_records.numbers(pose_records.field(ann, "area", where, path), (), "area", where, path))
        box = clean_box(bbox, width, height)
        if box is None or area <= 0:
            continue
        x1, y1, w, h = box
        keypoints = raw.reshape(NUM_JOINTS, 3).copy()
        keypoints[:, 2] = np.minimum(keypoints[:, 2], 1.0)
        center = (x1 + 0.5 * w, y1 + 0.5 * h)
        persons.append((name, Path(name).stem, int(ann.get("id", i)), keypoints, center, (w, h), area))
    return persons


def plan(root):
    """``{split: [(image path, image_id, person_id, keypoints, centre, size, area)]}``, every file checked."""
    root = Path(root)
    out = {}
    for split, folder in SPLITS.items():
        annotations = base.require(
            root / "annotations" / f"person_keypoints_{folder}.json", f"COCO {split} keypoint annotations", HOW
        )
        out[split] = []
        for name, stem, person_id, keypoints, center, size, area in read_persons(annotations):
            path = base.require(root / folder / name, f"image {name} of split {split}", HOW)
            out[split].append((path, stem, person_id, keypoints, center, size, area))
    return out


class CocoKeypoints(base.ArrayRecordBuilder):
    """Builder of ``coco_keypoints`` (see the module docstring for the manual directory)."""

    name = "coco_keypoints"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "COCO 2017 person keypoints, one record per person, train/val."}
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW
    HOMEPAGE = "https://cocodataset.org/#keypoints-2017"
    # Records in the annotation files' order (person_id order): evaluation reads them in the order of the ground
    # truth (MPII's gt_valid.mat columns); training shuffles in the pipeline anyway.
    KEEP_ORDER = True

    def _features(self):
        return pose_records.spec(NUM_JOINTS)

    def _split_generators(self, dl_manager):
        splits = plan(self._manual_root(dl_manager, HOW))
        return {split: self._generate_examples(items) for split, items in splits.items()}

    def _generate_examples(self, items):
        for path, image_id, person_id, keypoints, center, size, area in items:
            yield (
                str(person_id),
                pose_records.record(
                    pose_records.image_bytes(path),
                    image_id,
                    person_id,
                    keypoints,
                    center,
                    size,
                    keypoint_norm=np.sqrt(area),
                    area=area,
                ),
            )

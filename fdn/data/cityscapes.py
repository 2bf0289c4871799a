"""``cityscapes_fine``: Cityscapes with the fine annotations, 19 train ids, 255 = ignore.

Splits ``train`` (2,975), ``val`` (500) and, when its trees are present, ``test`` (1,525; its public
labels are all void, so every pixel is 255). ``image`` is the original 2048x1024 ``leftImg8bit`` PNG
(stored as is), ``image_id`` the file stem without ``_leftImg8bit`` (e.g. ``aachen_000000_000019``),
``segmentation`` the ``gtFine`` labelIds mapped to trainIds with the official table (cityscapesScripts
``labels.py``: 34 ids -> 19 train ids, everything else 255).

Manual directory (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` from
https://www.cityscapes-dataset.com/downloads/, registration needed)::

    MANUAL/leftImg8bit/{train,val[,test]}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    MANUAL/gtFine/{train,val[,test]}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png
"""

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, features

NUM_CLASSES = 19
HOW = (
    "leftImg8bit/ and gtFine/ from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip "
    "(https://www.cityscapes-dataset.com/downloads/)"
)
# labelId -> trainId of the 19 evaluated classes (cityscapesScripts helpers/labels.py); the rest is 255.
TRAIN_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)


def _lookup():
    table = np.full(256, 255, np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        table[label_id] = train_id
    return table


LABEL_TO_TRAIN = _lookup()


def to_train_ids(label_ids):
    """Map a labelIds array (uint8) to trainIds (0..18, 255 = ignore)."""
    return LABEL_TO_TRAIN[np.asarray(label_ids, dtype=np.uint8)]


def plan(root):
    """``{split: [(image_id, image_path, label_path), ...]}``; train and val required, test optional."""
    root = Path(root)
    splits = {}
    for split in ("train", "val", "test"):
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            if split == "test":
                continue
            raise base.ManualDataError(f"missing Cityscapes images: expected {image_dir}\n  {HOW}")
        items = []
        for image_path in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image_path.name[: -len("_leftImg8bit.png")]
            label_path = root / "gtFine" / split / image_path.parent.name / f"{stem}_gtFine_labelIds.png"
            base.require(label_path, f"fine labels of {stem}", HOW)
            items.append((stem, image_path, label_path))
        if not items:
            raise base.ManualDataError(f"no *_leftImg8bit.png under {image_dir}/CITY/\n  {HOW}")
        splits[split] = items
    return splits


class CityscapesFine(base.ArrayRecordBuilder):
    """Builder of ``cityscapes_fine`` (see the module docstring for the manual directory)."""

    name = "cityscapes_fine"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fine annotations, 19 train ids."}
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW
    HOMEPAGE = "https://www.cityscapes-dataset.com/"

    def _features(self):
        return tfds.features.FeaturesDict(
            {
                "image": features.image("png"),
                "image_id": features.image_id(),
                "segmentation": features.label_map(),
            }
        )

    def _split_generators(self, dl_manager):
        splits = plan(self._manual_root(dl_manager, HOW))
        return {split: self._generate_examples(items) for split, items in splits.items()}

    def _generate_examples(self, items):
        for image_id, image_path, label_path in items:
            with Image.open(image_path) as image:
                size, mode = image.size[::-1], image.mode
            data = Path(image_path).read_bytes() if mode == "RGB" else Image.open(image_path).convert("RGB")
            with Image.open(label_path) as label:
                label_ids = np.array(label, dtype=np.uint8)
            if label_ids.shape != size:
                raise ValueError(f"{label_path}: labels {label_ids.shape} != image {size} of {image_path}")
            yield image_id, {"image": data, "image_id": image_id, "segmentation": to_train_ids(label_ids)}

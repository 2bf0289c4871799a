"""cityscapes_fine builder: leftImg8bit/gtFine trees, labelIds -> trainIds."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fdn.data import base, cityscapes, prepare
from tests.data import trees

# cityscapesScripts helpers/labels.py: (labelId, trainId) of all 34 labels, 255 = ignored in evaluation.
OFFICIAL = [
    (0, 255),
    (1, 255),
    (2, 255),
    (3, 255),
    (4, 255),
    (5, 255),
    (6, 255),
    (7, 0),
    (8, 1),
    (9, 255),
    (10, 255),
    (11, 2),
    (12, 3),
    (13, 4),
    (14, 255),
    (15, 255),
    (16, 255),
    (17, 5),
    (18, 255),
    (19, 6),
    (20, 7),
    (21, 8),
    (22, 9),
    (23, 10),
    (24, 11),
    (25, 12),
    (26, 13),
    (27, 14),
    (28, 15),
    (29, 255),
    (30, 255),
    (31, 16),
    (32, 17),
    (33, 18),
]


def test_train_id_table():
    for label_id, train_id in OFFICIAL:
        assert cityscapes.LABEL_TO_TRAIN[label_id] == train_id, label_id
    assert (cityscapes.LABEL_TO_TRAIN[34:] == 255).all()


def test_round_trip_with_train_ids(tmp_path):
    expected = trees.write_cityscapes(tmp_path / "m", np.random.default_rng(0), splits=("train", "val", "test"))
    prepare.prepare("cityscapes_fine", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    sources = tfds.data_source("cityscapes_fine", data_dir=tmp_path / "tfds", download=False)
    assert set(sources) == {"train", "val", "test"}
    table = dict(OFFICIAL)
    for split, items in expected.items():
        records = trees.read_all(sources[split])
        assert set(records) == set(items)
        for stem, (image, label_ids) in items.items():
            np.testing.assert_array_equal(records[stem]["image"], image)
            want = np.vectorize(table.get)(label_ids).astype(np.uint8)
            np.testing.assert_array_equal(records[stem]["segmentation"], want)
            assert set(np.unique(records[stem]["segmentation"])) == set(range(19)) | {255}


def test_missing_label_file(tmp_path):
    trees.write_cityscapes(tmp_path / "m", np.random.default_rng(1))
    (tmp_path / "m" / "gtFine" / "val" / "bonn" / "bonn_000001_000020_gtFine_labelIds.png").unlink()
    with pytest.raises(base.ManualDataError, match="bonn_000001_000020_gtFine_labelIds.png"):
        prepare.prepare("cityscapes_fine", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")

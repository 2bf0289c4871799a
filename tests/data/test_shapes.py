"""fdn_shapes: deterministic, balanced, context-dependent classes, and the builder round trip."""

import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fdn.data import prepare, shapes

# sha256 of image+segmentation+depth bytes. A change means the dataset changed: bump the builder VERSION.
GOLDEN = {
    ("train", 0): "9e9deb27fe1ea00c147340aced371c86d08ea5f8895dccb1aae54b546b26b5cf",
    ("val", 7): "571ae49f1f3c5f5e64e6d2b7bd98a107f3a7ec823e72ffe18b6d095056f7e159",
}


def _digest(example):
    h = hashlib.sha256()
    for key in ("image", "segmentation", "depth"):
        h.update(example[key].tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def train100():
    return [shapes.render("train", i) for i in range(100)]


def test_deterministic_and_golden():
    for (split, index), digest in GOLDEN.items():
        assert _digest(shapes.render(split, index)) == digest
    assert _digest(shapes.render("train", 3)) == _digest(shapes.render("train", 3))
    assert _digest(shapes.render("train", 3)) != _digest(shapes.render("val", 3))


def test_shapes_dtypes_and_depth(train100):
    for example in train100[:10]:
        assert example["image"].shape == (shapes.HEIGHT, shapes.WIDTH, 3) and example["image"].dtype == np.uint8
        assert example["segmentation"].shape == (shapes.HEIGHT, shapes.WIDTH)
        assert example["segmentation"].dtype == np.uint8 and example["segmentation"].max() < shapes.NUM_CLASSES
        depth = example["depth"]
        assert depth.dtype == np.float32 and depth.shape == (shapes.HEIGHT, shapes.WIDTH)
        assert (depth >= 0).all() and depth.max() < 10 and (depth == 0).mean() < 0.05
    assert any((e["depth"] == 0).any() for e in train100)  # some invalid holes


def test_class_balance(train100):
    seg = np.stack([e["segmentation"] for e in train100])
    share = np.bincount(seg.ravel(), minlength=shapes.NUM_CLASSES) / seg.size
    presence = np.array([(seg == c).any(axis=(1, 2)).mean() for c in range(shapes.NUM_CLASSES)])
    assert 0.5 < share[0] < 0.85, share
    assert (share[1:5] > 0.03).all(), share
    assert (share[5:] > 0.002).all(), share
    assert (presence >= 0.5).all(), presence


def test_marker_class_depends_on_what_it_lies_on(train100):
    """Class 5 markers touch striped objects (1, 3); class 6 markers touch anything else."""
    seen = {5: 0, 6: 0}
    for example in train100:
        seg = example["segmentation"].astype(np.int64)
        padded = np.pad(seg, 1, constant_values=-1)
        for marker, hosts in ((5, {1, 3}), (6, {0, 2, 4})):
            inside = padded == marker
            ring = np.zeros_like(inside)
            for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                ring |= np.roll(inside, (dy, dx), axis=(0, 1))
            around = set(np.unique(padded[ring & ~inside]).tolist()) - {-1, 5, 6}
            if inside.any():
                seen[marker] += 1
                assert around & hosts, (marker, around)
    assert min(seen.values()) > 30


def test_builder_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes, "SPLITS", {"train": 6, "val": 3})
    prepare.prepare("fdn_shapes", data_dir=tmp_path)
    sources = tfds.data_source("fdn_shapes", data_dir=tmp_path, download=False)
    assert {s: len(v) for s, v in sources.items()} == {"train": 6, "val": 3}
    for split, source in sources.items():
        for i in range(len(source)):
            record = source[i]
            index = int(record["image_id"].rsplit("_", 1)[1])
            assert record["image_id"] == shapes.image_id(split, index)
            expected = shapes.render(split, index)
            for key in ("image", "segmentation", "depth", "keypoints"):
                assert record[key].dtype == expected[key].dtype
                np.testing.assert_array_equal(record[key], expected[key])
            assert float(record["keypoint_norm"]) == float(expected["keypoint_norm"])
            np.testing.assert_array_equal(record["keypoint_flip"], shapes.KEYPOINT_FLIP)

"""nyu_depth_v2_labeled builder: an HDF5 (MATLAB v7.3) .mat with transposed axes and a v5 splits.mat."""

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, prepare
from tests.data import trees

NYU_SAMPLES = trees.SAMPLES / "nyud"


def _frames(rng, n, h=6, w=10):
    return [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(n)]


def test_depth_config_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = _frames(rng, 5)
    depths, labels = trees.write_nyu(tmp_path / "m", rng, frames)
    prepare.prepare("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    sources = tfds.data_source("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds", download=False)
    assert {s: len(v) for s, v in sources.items()} == {"train": 3, "test": 2}
    for split, ids in (("train", {"1", "3", "5"}), ("test", {"2", "4"})):
        records = trees.read_all(sources[split])
        assert set(records) == ids
        for image_id, record in records.items():
            i = int(image_id) - 1
            assert record["image"].shape == (6, 10, 3) and record["image"].dtype == np.uint8
            np.testing.assert_array_equal(record["image"], frames[i])
            assert record["depth"].dtype == np.float32
            np.testing.assert_array_equal(record["depth"], depths[i])
            np.testing.assert_array_equal(record["labels_894"], labels[i])
            assert "segmentation" not in record


def test_seg40_config_maps_labels(tmp_path):
    rng = np.random.default_rng(1)
    frames = _frames(rng, 2)
    _, labels = trees.write_nyu(tmp_path / "m", rng, frames)
    with pytest.raises(base.ManualDataError, match="classMapping40.mat"):
        prepare.prepare("nyu_depth_v2_labeled/seg40", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    map_class = rng.integers(1, 41, 894)
    scipy.io.savemat(tmp_path / "m" / "classMapping40.mat", {"mapClass": map_class[None].astype(np.float64)})
    prepare.prepare("nyu_depth_v2_labeled/seg40", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    record = tfds.data_source("nyu_depth_v2_labeled/seg40", split="train", data_dir=tmp_path / "tfds", download=False)[
        0
    ]
    raw = labels[0]
    expected = np.where(raw == 0, 255, map_class[np.maximum(raw, 1) - 1] - 1).astype(np.uint8)
    assert record["segmentation"].dtype == np.uint8
    np.testing.assert_array_equal(record["segmentation"], expected)
    assert (record["segmentation"] == 255).any() and record["segmentation"][raw > 0].max() <= 39


def test_missing_mat_names_file_and_url(tmp_path):
    trees.write_nyu(tmp_path / "m", np.random.default_rng(2), _frames(np.random.default_rng(2), 2))
    (tmp_path / "m" / "splits.mat").unlink()
    with pytest.raises(base.ManualDataError, match=r"splits\.mat.*\n.*horatio"):
        prepare.prepare("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")


def test_truncated_mat_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(3)
    trees.write_nyu(tmp_path / "m", rng, _frames(rng, 2))
    path = tmp_path / "m" / "nyu_depth_v2_labeled.mat"
    path.write_bytes(path.read_bytes()[:700])  # an interrupted download
    with pytest.raises(base.ManualDataError, match="nyu_depth_v2_labeled.mat"):
        prepare.prepare("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    assert not tfds.builder("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds").is_prepared()


@pytest.mark.skipif(not NYU_SAMPLES.is_dir(), reason="../shared/data/samples not available")
def test_real_nyu_frames_round_trip(tmp_path):
    frames = [np.array(Image.open(NYU_SAMPLES / f"{k}_inp.png").convert("RGB")) for k in (231, 255)]
    assert frames[0].shape == (400, 560, 3)
    trees.write_nyu(tmp_path / "m", np.random.default_rng(4), frames)
    prepare.prepare("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    record = tfds.data_source("nyu_depth_v2_labeled", split="train", data_dir=tmp_path / "tfds", download=False)[0]
    np.testing.assert_array_equal(record["image"], frames[0])
    assert record["depth"].shape == (400, 560)

"""voc_sbd builder: miniature VOC + SBD trees in the real formats, read back through tfds.data_source."""

import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, pipeline, prepare, voc_sbd
from tests.data import trees

VOC_SAMPLES = trees.SAMPLES / "voc"
# From ../shared/data/samples/README.md.
SAMPLE_VALUES = {
    "2007_006171": {0, 12, 15, 18, 255},
    "2008_001513": {0, 8, 255},
    "2008_005197": {0, 12, 15, 255},
    "2009_002584": {0, 15, 16, 255},
    "2010_004994": {0, 3, 255},
}


def test_train_aug_val_train_round_trip(tmp_path):
    decoded, expected = trees.write_voc_sbd(tmp_path / "manual", np.random.default_rng(0))
    prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual")
    sources = tfds.data_source("voc_sbd", data_dir=tmp_path / "tfds", download=False)
    assert set(sources) == {"train_aug", "val", "train"}
    for split, masks in expected.items():
        records = trees.read_all(sources[split])
        assert set(records) == set(masks), split
        for image_id, record in records.items():
            assert isinstance(image_id, str)
            assert record["image"].dtype == np.uint8 and record["image"].shape == decoded[image_id].shape
            np.testing.assert_array_equal(record["image"], decoded[image_id])
            assert record["segmentation"].dtype == np.uint8
            np.testing.assert_array_equal(record["segmentation"], masks[image_id])
    # The 255 border band of the VOC masks survives; the SBD-only masks have none.
    aug = trees.read_all(sources["train_aug"])
    assert (aug["2007_000032"]["segmentation"] == 255).any()
    assert not (aug["2008_000002"]["segmentation"] == 255).any()


def test_segmentation_class_aug_layout(tmp_path):
    rng = np.random.default_rng(1)
    decoded, expected = trees.write_voc_sbd(tmp_path / "m", rng, with_sbd=False)
    aug_dir = tmp_path / "m" / "VOCdevkit" / "VOC2012" / "SegmentationClassAug"
    aug_masks = {}
    for image_id, image in decoded.items():
        aug_masks[image_id] = trees.random_mask(rng, *image.shape[:2])
        aug_dir.mkdir(exist_ok=True)
        Image.fromarray(aug_masks[image_id]).save(aug_dir / f"{image_id}.png")  # grey PNG, as distributed
    prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m" / "VOCdevkit")
    records = trees.read_all(tfds.data_source("voc_sbd", split="train_aug", data_dir=tmp_path / "tfds", download=False))
    assert set(records) == set(decoded) - {"2007_000033"}  # all but VOC val
    for image_id, record in records.items():
        np.testing.assert_array_equal(record["segmentation"], aug_masks[image_id])


def test_missing_files_name_the_path(tmp_path):
    trees.write_voc_sbd(tmp_path / "m", np.random.default_rng(2))
    (tmp_path / "m" / "benchmark_RELEASE" / "dataset" / "cls" / "2008_000003.mat").unlink()
    with pytest.raises(base.ManualDataError, match=r"2008_000003\.mat"):
        prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / "benchmark_RELEASE")
    with pytest.raises(base.ManualDataError, match="benchmark.tgz"):
        prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    with pytest.raises(base.ManualDataError, match="VOCtrainval"):
        prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "nothing")
    assert not (tmp_path / "tfds" / "voc_sbd" / "1.0.0").exists()


class _Interrupted(Exception):
    pass


def test_failure_mid_generation_leaves_no_complete_dataset(tmp_path, monkeypatch):
    trees.write_voc_sbd(tmp_path / "m", np.random.default_rng(3))
    calls = []

    def failing_load_mask(path):
        calls.append(path)
        if len(calls) == 3:  # after some records of the first split were written
            raise _Interrupted()
        return original(path)

    original = voc_sbd.load_mask
    monkeypatch.setattr(voc_sbd, "load_mask", failing_load_mask)
    with pytest.raises(_Interrupted):
        prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    assert not (tmp_path / "tfds" / "voc_sbd" / "1.0.0").exists()
    assert "train_aug" not in tfds.data_source("voc_sbd", data_dir=tmp_path / "tfds", download=False)
    assert not tfds.builder("voc_sbd", data_dir=tmp_path / "tfds").is_prepared()
    with pytest.raises(FileNotFoundError, match="fdn.data.prepare voc_sbd"):
        pipeline.data_source("voc_sbd", "train_aug", tmp_path / "tfds")
    # A rerun after the interruption completes normally.
    monkeypatch.setattr(voc_sbd, "load_mask", original)
    prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    assert len(tfds.data_source("voc_sbd", split="train_aug", data_dir=tmp_path / "tfds", download=False)) == 4


@pytest.mark.skipif(not VOC_SAMPLES.is_dir(), reason="../shared/data/samples not available")
def test_real_voc_palette_masks_decode_to_indices():
    for image_id, values in SAMPLE_VALUES.items():
        mask = voc_sbd.read_png_indices(VOC_SAMPLES / f"{image_id}.png")
        image = np.array(Image.open(VOC_SAMPLES / f"{image_id}.jpg"))
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        assert set(np.unique(mask).tolist()) == values, image_id


@pytest.mark.skipif(not VOC_SAMPLES.is_dir(), reason="../shared/data/samples not available")
def test_real_voc_files_through_the_builder(tmp_path):
    voc = tmp_path / "m" / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    ids = sorted(SAMPLE_VALUES)
    for image_id in ids:
        shutil.copy(VOC_SAMPLES / f"{image_id}.jpg", voc / "JPEGImages")
        shutil.copy(VOC_SAMPLES / f"{image_id}.png", voc / "SegmentationClass")
        shutil.copy(VOC_SAMPLES / f"{image_id}.png", voc / "SegmentationClassAug")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:2]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids[2:]) + "\n")
    prepare.prepare("voc_sbd", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    records = trees.read_all(tfds.data_source("voc_sbd", split="val", data_dir=tmp_path / "tfds", download=False))
    assert sorted(records) == ids[2:]
    for image_id, record in records.items():
        assert set(np.unique(record["segmentation"]).tolist()) == SAMPLE_VALUES[image_id]
        np.testing.assert_array_equal(record["image"], np.array(Image.open(VOC_SAMPLES / f"{image_id}.jpg")))

"""The paper's augmentations: image/label alignment, padding, minimum side, determinism."""

import numpy as np
import pytest

from fdn.data import augment

COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 255, 255]], np.uint8)


def _blocks(rng, h, w, block=12):
    """A record whose segmentation is drawn from the image: class c <=> colour COLOURS[c]."""
    cls = np.kron(rng.integers(0, len(COLOURS), (h // block + 1, w // block + 1)), np.ones((block, block), int))
    cls = cls[:h, :w].astype(np.uint8)
    return {"image": COLOURS[cls], "segmentation": cls, "depth": cls.astype(np.float32) + 1.0}


def _classify(image):
    """Nearest colour of a normalised image -> class map."""
    rgb = augment.denormalise(image).astype(np.int64)
    return np.argmin(((rgb[..., None, :] - COLOURS.astype(np.int64)) ** 2).sum(-1), axis=-1)


def _interior(seg):
    """Pixels whose 3x3 neighbourhood has one (non-ignore) label: bicubic ringing stays off them."""
    ok = seg != 255
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ok &= np.roll(seg, (dy, dx), axis=(0, 1)) == seg
    ok[[0, -1]] = ok[:, [0, -1]] = False
    return ok


@pytest.mark.parametrize("seed", range(6))
def test_train_geometry_keeps_image_and_labels_aligned(seed):
    rng = np.random.default_rng(seed)
    record = _blocks(rng, 75, 100)
    transform = augment.TrainTransform((64, 80), min_side=60, task="both")
    out = transform(record, np.random.default_rng(100 + seed))
    assert out["image"].shape == (64, 80, 3) and out["image"].dtype == np.float32
    seg, depth = out["segmentation"], out["depth"]
    interior = _interior(seg)
    assert interior.mean() > 0.5
    agree = (_classify(out["image"]) == seg)[interior].mean()
    assert agree > 0.99, agree
    # Depth went through the same nearest resize: exactly class + 1 wherever it is not padding.
    np.testing.assert_array_equal(depth[seg != 255], seg[seg != 255].astype(np.float32) + 1)


def test_mirror_happens_about_half_the_time():
    record = _blocks(np.random.default_rng(0), 36, 48)
    transform = augment.TrainTransform((36, 48), min_side=36, scale_range=(1.0, 1.0), task="segmentation")
    outcomes = []
    for seed in range(40):
        seg = transform(record, np.random.default_rng(seed))["segmentation"]
        flipped = np.array_equal(seg, record["segmentation"][:, ::-1])
        assert flipped or np.array_equal(seg, record["segmentation"])
        outcomes.append(flipped)
    assert 8 < sum(outcomes) < 32


def test_min_side_rule():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = augment.train_scale(rng, 200, (0.7, 1.4), 300)
        assert s == pytest.approx(1.5)
    scales = [augment.train_scale(rng, 400, (0.7, 1.4), 300) for _ in range(200)]
    assert min(scales) == 0.75 and max(scales) <= 1.4 and len(set(scales)) > 100  # 400 * s >= 300
    record = {"image": np.zeros((200, 260, 3), np.uint8)}
    assert augment.resize(record, 300 / 200)["image"].shape == (300, 390, 3)


def test_padding_is_mean_and_ignore():
    rng = np.random.default_rng(0)
    record = _blocks(rng, 20, 30)
    record["image"] = np.full((20, 30, 3), 200, np.uint8)
    transform = augment.TrainTransform(64, min_side=10, scale_range=(1.0, 1.0), task="both")
    out = transform(record, np.random.default_rng(1))
    pad = out["segmentation"] == 255
    assert pad.sum() == 64 * 64 - 20 * 30
    assert (out["image"][pad] == 0).all()  # mean padding = 0 after normalisation
    assert (out["depth"][pad] == 0).all()
    assert np.allclose(out["image"][~pad], augment.normalise(np.full((1, 1, 3), 200, np.uint8))[0, 0])
    rows, cols = np.nonzero(~pad)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (22, 41, 17, 46)  # centred


def test_train_transform_is_deterministic_for_a_generator_seed():
    record = _blocks(np.random.default_rng(0), 75, 100)
    transform = augment.TrainTransform(48, min_side=40, task="both")
    a = transform(record, np.random.default_rng(7))
    b = transform(record, np.random.default_rng(7))
    c = transform(record, np.random.default_rng(8))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_eval_transform_upscales_only_and_centre_crops():
    rng = np.random.default_rng(0)
    big = _blocks(rng, 100, 150)
    out = augment.EvalTransform(64, min_side=64, task="both")(big)
    np.testing.assert_array_equal(out["segmentation"], big["segmentation"][18:82, 43:107])
    np.testing.assert_array_equal(out["image"], augment.normalise(big["image"][18:82, 43:107]))
    assert out["valid"]
    small = _blocks(rng, 40, 50)
    out = augment.EvalTransform((64, 96), min_side=64, task="segmentation")(small)
    assert out["image"].shape == (64, 96, 3)
    assert not (out["segmentation"][:, 80:] == 255).all()  # 80-wide after upscaling, padded to 96
    assert (out["segmentation"][:, :8] == 255).all() and (out["segmentation"][:, -8:] == 255).all()
    assert (_classify(out["image"]) == out["segmentation"])[_interior(out["segmentation"])].mean() > 0.99
    pad = augment.EvalTransform(32, task="depth")({})
    assert not pad["valid"] and (pad["depth"] == 0).all() and (pad["image"] == 0).all()


def test_missing_label_key_is_a_clear_error():
    with pytest.raises(KeyError, match="no 'depth'"):
        augment.TrainTransform(8, task="depth")({"image": np.zeros((8, 8, 3), np.uint8)}, np.random.default_rng(0))


def _pose_example(w, keypoints, flip):
    image = np.arange(2 * w * 3, dtype=np.uint8).reshape(2, w, 3)
    return {
        "image": image,
        "keypoints": np.asarray(keypoints, np.float32),
        "keypoint_norm": np.float32(3.0),
        "keypoint_flip": np.asarray(flip),
    }


def test_mirror_maps_keypoints_exactly():
    # Width 5, pixel centres at 0..4: x -> 4 - x (0 -> 4, 1.5 -> 2.5); then joints are permuted by the record's
    # flip [1, 0] (left <-> right), so output joint 0 is input joint 1 mirrored.
    example = _pose_example(5, [[0.0, 0.0, 1.0], [1.5, 1.0, 1.0]], [1, 0])
    out = augment.mirror(example)
    np.testing.assert_array_equal(out["keypoints"], [[2.5, 1.0, 1.0], [4.0, 0.0, 1.0]])
    np.testing.assert_array_equal(out["image"], example["image"][:, ::-1])


def test_crop_hides_keypoints_past_the_last_pixel_centre():
    # A 4x4 crop at left = 1 keeps x in [0, 3] after the shift: 4.0 -> 3.0 stays visible, 4.5 -> 3.5 and 0.5 -> -0.5
    # are outside the crop's pixel centres (v = 0); y likewise: 3.5 is past the last row centre 3.
    kp = [[4.0, 1.0, 1.0], [4.5, 1.0, 1.0], [0.5, 1.0, 1.0], [2.0, 3.5, 1.0], [2.0, 3.0, 1.0]]
    example = _pose_example(6, kp, [0, 1, 2, 3, 4])
    out = augment.crop(example, (4, 4), 0, 1)
    np.testing.assert_array_equal(out["keypoints"][:, 0], [3.0, 3.5, -0.5, 1.0, 1.0])
    np.testing.assert_array_equal(out["keypoints"][:, 2], [1, 0, 0, 0, 1])

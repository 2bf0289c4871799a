"""The pose task (`fdn.tasks.Pose`, `fdn.pose.heatmaps`): targets, decoding, the flip test, PCK, keypoints through
the augmentations, the stride-4 head, pictures and the export parity of a pose model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn import conventions, tasks
from fdn.data import augment, shapes
from fdn.pose import heatmaps as H
from fdn.pose import joints

POSE = tasks.get(tasks.POSE)


def _keypoints(rng, n, k, size):
    """(n, k, 3) visible joints inside an (H, W) input, away from the border (so the shift has neighbours)."""
    x = rng.uniform(8, size[1] - 9, (n, k))
    y = rng.uniform(8, size[0] - 9, (n, k))
    return np.stack([x, y, np.ones_like(x)], -1).astype(np.float32)


def test_targets_follow_the_reference():
    kp = np.array([[[20.0, 12.0, 1], [7.0, 9.0, 0], [-40.0, 5.0, 1], [-25.0, 5.0, 1]]], np.float32)
    targets, weights = H.render(kp, (16, 16))
    targets, weights = np.asarray(targets), np.asarray(weights)
    # Joint 0: centred on the integer cell int(20/4 + .5) = 5, int(12/4 + .5) = 3, peak 1, radius 3 sigma = 6.
    assert targets[0, 3, 5, 0] == 1.0 and np.unravel_index(targets[0, ..., 0].argmax(), (16, 16)) == (3, 5)
    assert targets[0, 3, 11, 0] > 0 and targets[0, 3, 12, 0] == 0  # 6 cells away: inside; 7: cut
    np.testing.assert_allclose(targets[0, 4, 5, 0], np.exp(-1 / 8), rtol=1e-6)  # unnormalised, sigma 2
    # Invisible -> weight 0, empty map; window wholly off the map -> weight 0; partly on the map -> drawn.
    assert weights.tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert targets[..., 1].max() == 0 and targets[..., 2].max() == 0 and targets[..., 3].max() > 0


def test_encode_decode_round_trip_within_half_a_cell():
    rng = np.random.default_rng(0)
    kp = _keypoints(rng, 4, 6, (64, 48))
    targets, _ = H.render(kp, H.heatmap_size((64, 48)))
    cells, peaks = H.decode(targets)
    err = np.abs(np.asarray(cells) - kp[..., :2] / H.STRIDE)
    assert err.max() <= 0.5 and np.all(np.asarray(peaks) == 1.0)
    np.testing.assert_allclose(np.asarray(H.to_input_pixels(cells)), np.round(kp[..., :2] / 4) * 4, atol=1e-5)


def test_decoding_shifts_a_quarter_cell_towards_the_higher_neighbour():
    hm = np.zeros((1, 5, 6, 2), np.float32)
    hm[0, 2, 3, 0], hm[0, 2, 4, 0], hm[0, 1, 3, 0] = 1.0, 0.5, 0.2  # right and up are higher
    hm[0, 0, 0, 1] = 1.0  # in a corner: no neighbour pair, no shift
    cells, peaks = H.decode(jnp.asarray(hm))
    np.testing.assert_allclose(np.asarray(cells)[0], [[3.25, 1.75], [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(peaks)[0], [1.0, 1.0])


def test_flip_back_pairs_joints_and_shifts_one_cell():
    # Joints at multiples of the stride: the mirror image's targets, flipped back, decode exactly where the
    # original joints are only with the reference's one-cell shift, and each joint only with the pairs swapped.
    w_in, h_in = 64, 32
    kp = np.array([[[8.0, 8.0, 1], [20.0, 16.0, 1], [40.0, 12.0, 1]]], np.float32)
    flip = joints.flip_permutation(3, [(1, 2)])
    assert flip.tolist() == [0, 2, 1]
    mirrored = kp.copy()
    mirrored[..., 0] = w_in - 1 - kp[..., 0]
    mirrored = mirrored[:, list(flip)]
    size = H.heatmap_size((h_in, w_in))
    flipped_outputs, _ = H.render(mirrored, size)
    back = H.flip_back(flipped_outputs, flip)
    cells, _ = H.decode(back)
    np.testing.assert_allclose(np.asarray(cells)[0] * H.STRIDE, kp[0, :, :2])
    # And the task's flip test averages the two: with the same targets both ways, the result is the targets.
    plain, _ = H.render(kp, size)
    batch = {tasks.KEYPOINT_FLIP: np.array([flip], np.int32)}
    merged = POSE.merge_flipped(plain, flipped_outputs, batch)
    np.testing.assert_allclose(np.asarray(merged)[..., 1:-1, :], np.asarray(plain)[..., 1:-1, :], atol=1e-6)


def test_loss_is_half_the_weighted_mse():
    rng = np.random.default_rng(1)
    kp = _keypoints(rng, 2, 3, (32, 32))
    kp[1, 2, 2] = 0  # invisible: its output is free
    targets, weights = H.render(kp, (8, 8))
    pred = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    w = np.asarray(weights)[:, None, None, :]
    want = 0.5 * np.mean((pred * w - np.asarray(targets) * w) ** 2)
    np.testing.assert_allclose(float(H.loss(pred, targets, weights)), want, rtol=1e-6)
    pred2 = pred.copy()
    pred2[1, ..., 2] += 100.0
    assert float(H.loss(pred2, targets, weights)) == pytest.approx(float(H.loss(pred, targets, weights)))
    terms = POSE.loss_terms(jnp.asarray(targets), [jnp.asarray(targets)[:, ::2, ::2]], {"keypoints": kp}, 0.2)
    assert float(terms["main"]) == 0.0 and float(terms["aux"]) > 0


def test_pck_on_hand_made_cases():
    # Two images, norm 10 (threshold 5 px). Predictions (from heatmaps peaked at chosen cells): joint 0 exact,
    # joint 1 off by 4 px (hit), joint 2 off by 8 px (miss), joint 3 invisible (not counted).
    gt = np.array([[[16, 16, 1], [32, 16, 1], [16, 32, 1], [40, 40, 0]]] * 2, np.float32)
    pred_px = np.array([[[16, 16], [36, 16], [24, 32], [0, 0]]] * 2, np.float32)
    hm, _ = H.render(np.concatenate([pred_px, np.ones((2, 4, 1), np.float32)], -1), (16, 16))
    batch = {
        "keypoints": gt,
        tasks.KEYPOINT_NORM: np.array([10.0, 10.0], np.float32),
        "valid": np.array([True, False]),  # the second image is padding
    }
    sums = POSE.eval_sums(hm, batch, 4)
    np.testing.assert_array_equal(np.asarray(sums["hits"]), [1, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(sums["count"]), [1, 1, 1, 0])
    scores = POSE.summarise(sums)
    assert scores["pck"] == pytest.approx(2 / 3) and scores["score"] == scores["pck"]
    assert scores["pck_joint_mean"] == pytest.approx(2 / 3)
    report = "\n".join(POSE.report(scores, sums, ["a", "b", "c", "d"]))
    assert "PCK@0.5 0.6667" in report and "\nc " in report
    hits, counted = H.pck_hits(jnp.asarray(pred_px), gt, np.array([10.0, 16.0]))
    np.testing.assert_array_equal(np.asarray(hits), [[1, 1, 0, 0], [1, 1, 1, 0]])  # 8 <= 0.5 * 16
    np.testing.assert_array_equal(np.asarray(counted)[0], [1, 1, 1, 0])


def _dot_record(rng):
    """A fdn_shapes-like record with one bright dot per keypoint on black (dots found again after augmenting)."""
    image = np.zeros((60, 80, 3), np.uint8)
    kp = np.array([[20, 15, 1], [60, 40, 1], [45, 25, 1]], np.float32)
    for x, y, _ in kp:
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    return {"image": image, "keypoints": kp, "keypoint_norm": np.float32(10), "keypoint_flip": np.array([0, 2, 1])}


def test_keypoints_follow_the_training_augmentation():
    record = _dot_record(np.random.default_rng(0))
    transform = augment.TrainTransform(48, min_side=40, scale_range=(0.6, 1.2), task=tasks.POSE)
    seen = set()
    for seed in range(12):
        out = transform(record, np.random.default_rng(seed))
        brightness = conventions.denormalise(out["image"]).astype(np.float32).sum(-1)
        kp, norm = out["keypoints"], float(out["keypoint_norm"])
        assert 10 * 40 / 60 * 0.95 <= norm <= 10 * 1.2 * 1.05  # scaled with the image
        for j, (x, y, v) in enumerate(kp):
            if v == 0:
                assert not (0 <= x <= 47 and 0 <= y <= 47)
                continue
            window = brightness[max(int(y) - 2, 0) : int(y) + 3, max(int(x) - 2, 0) : int(x) + 3]
            assert window.max() > 300, (seed, j, x, y)  # the dot is where the keypoint says
        # Joints 1 and 2 are a left/right pair: joint 1 is right of joint 2 in every crop, mirrored or not (the
        # swap); joint 0 is left of joint 2 only in the crops that were not mirrored.
        assert kp[1, 0] > kp[2, 0]
        seen.add(bool(kp[0, 0] < kp[2, 0]))
    assert seen == {True, False}  # both mirrored and plain crops were checked


def test_keypoints_follow_the_evaluation_crop_and_padding_keeps_shapes():
    record = _dot_record(np.random.default_rng(0))
    transform = augment.EvalTransform((40, 40), min_side=80, task=tasks.POSE, like=record)
    out = transform(record)  # 60x80 scaled to 80x107, then a central 40x40 crop
    assert out["valid"] and out["keypoints"].shape == (3, 3)
    scale = 80 / 60
    left, top = (round(80 * scale) - 40) // 2, (80 - 40) // 2
    want = (record["keypoints"][:, :2] + 0.5) * [round(80 * scale) / 80, 80 / 60] - 0.5 - [left, top]
    np.testing.assert_allclose(out["keypoints"][:, :2], want, atol=1e-4)
    np.testing.assert_array_equal(out["keypoints"][:, 2], [(0 <= x <= 39) and (0 <= y <= 39) for x, y in want])
    assert float(out["keypoint_norm"]) == pytest.approx(10 * scale, rel=0.01)
    empty = transform({})
    assert not empty["valid"] and empty["keypoints"].shape == (3, 3) and empty["keypoint_flip"].shape == (3,)


def test_pose_batches_from_the_pipelines():
    from fdn.data import pipeline

    records = [{**_dot_record(None), "image_id": f"r{i}"} for i in range(3)]
    batch = next(iter(pipeline.train_dataset(records, crop_size=32, batch_size=2, seed=0, task=tasks.POSE)))
    assert batch["keypoints"].shape == (2, 3, 3) and batch["keypoints"].dtype == np.float32
    assert batch["keypoint_norm"].shape == (2,) and batch["keypoint_flip"].shape == (2, 3)
    batches = list(pipeline.eval_dataset(records, crop_size=(60, 80), batch_size=2, min_side=0, task=tasks.POSE))
    assert [b["valid"].tolist() for b in batches] == [[True, True], [True, False]]
    np.testing.assert_allclose(batches[0]["keypoints"][0], records[0]["keypoints"])  # whole image: unchanged


def test_shapes_keypoints_are_the_nearest_objects_extremes():
    for index in range(30):
        example = shapes.render("train", index)
        kp, r = example["keypoints"], float(example["keypoint_norm"])
        assert kp.shape == (shapes.NUM_KEYPOINTS, 3) and 14 <= r <= 60
        centre, top, bottom, left, right = kp[:, :2]
        assert top[1] < centre[1] < bottom[1] and left[0] < centre[0] < right[0]
        for (x, y), v in zip(kp[1:, :2], kp[1:, 2]):
            assert v == float(0 <= x <= shapes.WIDTH - 1 and 0 <= y <= shapes.HEIGHT - 1)
            if v:  # an outline point lies on a foreground object (not on the background)
                y0, x0 = int(round(y)), int(round(x))
                patch = example["segmentation"][max(y0 - 2, 0) : y0 + 3, max(x0 - 2, 0) : x0 + 3]
                assert patch.max() > 0, (index, x, y)
    assert [shapes.KEYPOINT_FLIP[j] for j in shapes.KEYPOINT_FLIP] == list(range(shapes.NUM_KEYPOINTS))
    pairs = shapes.KEYPOINT_FLIP_PAIRS
    assert list(shapes.KEYPOINT_FLIP) == joints.flip_permutation(shapes.NUM_KEYPOINTS, pairs).tolist()


def test_pose_pictures_draw_the_joints(tmp_path):
    from PIL import Image

    from fdn.serve import evaluation

    image = np.zeros((2, 24, 24, 3), np.float32)
    kp = np.array([[[4, 4, 1], [18, 10, 1], [10, 18, 0]]] * 2, np.float32)
    batch = {"image": image, "keypoints": kp, "valid": np.array([True, True])}
    assert evaluation.write_pictures(tmp_path, 0, batch, kp, tasks.POSE, limit=1, edges=[(0, 1)]) == 1
    with Image.open(tmp_path / "0000_pred.png") as pred:
        pixels = np.asarray(pred.convert("RGB")).astype(int)
    black = conventions.denormalise(image[0])
    assert (pixels[4, 4] != black[4, 4]).any() and (pixels[10, 18] != black[10, 18]).any()
    assert (pixels[18, 10] == black[18, 10]).all()  # invisible joint: not drawn
    assert (pixels[7, 11] == 255).all()  # on the edge from (4, 4) to (18, 10)


@pytest.fixture(scope="module")
def pose_model(tmp_path_factory):
    """arch1 (decoder output at stride 8) as a pose model with 5 joints: spec, random variables, a checkpoint."""
    from fdn import genotype as G
    from fdn.models.decoder import DecoderSettings
    from fdn.models.segmenter import ModelSpec
    from fdn.serve import checkpoint
    from fdn.serve import export as E

    spec = ModelSpec(G.parse("arch1"), DecoderSettings(5, 16, 1, False), tasks.POSE)
    variables = E.random_variables(spec, seed=1, random_bn_stats=True)
    directory = checkpoint.save_model(tmp_path_factory.mktemp("pose") / "ckpt", variables, spec)
    return spec, variables, directory


def test_heatmaps_are_at_stride_4_for_a_stride_8_decoder(pose_model):
    from fdn.models.segmenter import ModelSpec

    spec, variables, _ = pose_model
    images = jax.ShapeDtypeStruct((1, 64, 48, 3), jnp.float32)

    def shapes_of(s):
        return jax.eval_shape(
            lambda v, x: s.build().apply(v, x, train=True, mutable=["batch_stats"])[0], variables, images
        )

    logits, aux = shapes_of(spec)
    assert logits.shape == (1, 16, 12, 5)  # stride 4; the auxiliary heads stay at their blocks' strides
    assert len(aux) == 3 and all(a.shape[-1] == 5 for a in aux)
    plain = ModelSpec(spec.genotype, spec.decoder, tasks.SEGMENTATION)
    assert shapes_of(plain)[0].shape == (1, 8, 6, 5)  # the same decoder ends at stride 8


def test_pose_export_matches_fdn(pose_model, tmp_path):
    from fdn.serve import export as E
    from fdn.serve.inference import make_forward

    spec, variables, directory = pose_model
    images = np.random.default_rng(2).normal(size=(1, 64, 64, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        want = np.asarray(make_forward(spec, with_aux=False)(variables, images)[0])
    out = tmp_path / "pose.stablehlo"
    E.export_checkpoint(directory, "stablehlo", out, E.ExportSpec(1, 64, 64))
    got = np.asarray(jax.export.deserialize(bytearray(out.read_bytes())).call(images))
    assert got.shape == want.shape == (1, 16, 16, 5)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-4


def test_predict_writes_joints_json_and_skeleton_pictures(pose_model, tmp_path):
    import json

    from PIL import Image

    from fdn import predict

    _, _, directory = pose_model
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(tmp_path / "a.png")
    text = predict.run(directory, tmp_path / "out.npz", [str(tmp_path / "a.png")], png=tmp_path / "png", aux=False)
    assert "pose predictions of 1 image" in text
    joints = json.loads((tmp_path / "out.json").read_text())["images"]["a"]
    assert np.asarray(joints).shape == (5, 3)
    assert all(0 <= x <= 47 and 0 <= y <= 31 for x, y, _ in joints)
    with Image.open(tmp_path / "png" / "a.png") as im:
        assert im.size == (48, 32) and im.mode == "RGB"

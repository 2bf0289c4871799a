"""Pose data: the MPII (converted JSON + ``gt_valid.mat``, and the official ``.mat``) and COCO keypoint builders
on miniature trees in the real formats, their errors, and the crop pipeline (joints follow the image warp)."""

import json

import numpy as np
import pytest
import scipy.io

from fdn import tasks
from fdn.conventions import denormalise
from fdn.data import base, catalog, mpii, pipeline, pose_pipeline, pose_records, prepare
from fdn.pose import affine, joints
from tests.data import trees

K_MPII, K_COCO = joints.MPII.num_joints, joints.COCO.num_joints


def _image(root, name, h=40, w=50, seed=0):
    trees.write_jpeg(root / name, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _records(name, split, data_dir):
    source = pipeline.data_source(name, split, str(data_dir))
    return [source[i] for i in range(len(source))]


# --------------------------------------------------------------------------------------------------- MPII
def _mpii_json_tree(root, gt_shift=100.0):
    """Two training persons (one image holds both) and one validation person, with its gt_valid.mat (joints
    ``gt_shift`` pixels off the JSON's: 100 tells the two sources apart; 0 keeps some inside the crop)."""
    for i, name in enumerate(("000000001.jpg", "000000002.jpg")):
        _image(root / "images", name, seed=i)
    xy = np.arange(K_MPII * 2, dtype=float).reshape(K_MPII, 2) + 1  # 1-based
    vis = [1] * K_MPII
    vis[3] = 0
    train = [
        {"image": "000000001.jpg", "center": [20.0, 15.0], "scale": 0.1, "joints": xy.tolist(), "joints_vis": vis},
        {"image": "000000001.jpg", "center": [30.0, 25.0], "scale": 0.2, "joints": xy.tolist(), "joints_vis": vis},
    ]
    valid = [dict(train[0], image="000000002.jpg", center=[25.0, 20.0], scale=0.15)]
    (root / "annot").mkdir()
    (root / "annot" / "train.json").write_text(json.dumps(train))
    (root / "annot" / "valid.json").write_text(json.dumps(valid))
    missing = np.zeros((K_MPII, 1))
    missing[5] = 1
    headboxes = np.array([[[10.0], [12.0]], [[13.0], [16.0]]])  # corners (x1, y1), (x2, y2): diagonal 5
    scipy.io.savemat(
        root / "annot" / "gt_valid.mat",
        {"pos_gt_src": (xy + gt_shift)[:, :, None], "jnt_missing": missing, "headboxes_src": headboxes},
    )
    return xy


def test_mpii_json_form_round_trip(tmp_path):
    xy = _mpii_json_tree(tmp_path / "m")
    prepare.prepare("mpii_human_pose", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    train = _records("mpii_human_pose", "train", tmp_path / "tfds")
    assert len(train) == 2 and [r["person_id"] for r in train] == [0, 1]
    r = train[1]
    assert r["image_id"] == "000000001" and r["image"].shape == (40, 50, 3)
    # centre moves down 15 x scale, then 1-based -> 0-based; the box is 200 x scale square (x1.25 is the pipeline's)
    np.testing.assert_allclose(r["box_center"], [29.0, 25.0 + 15 * 0.2 - 1], rtol=1e-6)
    np.testing.assert_allclose(r["box_size"], [40.0, 40.0], rtol=1e-6)
    expected = np.concatenate([xy - 1, np.ones((K_MPII, 1))], axis=1)
    expected[3] = 0  # unlabelled: no position, v 0
    np.testing.assert_allclose(r["keypoints"], expected, rtol=1e-6)
    assert r["keypoint_norm"] == 0 and r["area"] == 0  # no head boxes in the converted training annotations
    (v,) = _records("mpii_human_pose", "valid", tmp_path / "tfds")
    # the validation joints, visibility and head size come from gt_valid.mat (what PCKh is scored against)
    np.testing.assert_allclose(v["keypoints"][:, :2][v["keypoints"][:, 2] > 0], (xy + 99)[np.arange(K_MPII) != 5])
    assert v["keypoints"][5, 2] == 0 and v["keypoints"][3, 2] == 1
    assert v["keypoint_norm"] == pytest.approx(0.6 * 5.0)
    assert catalog.dataset_classes("mpii_human_pose") == (K_MPII, list(joints.MPII.names))


def _struct_array(items):
    """A MATLAB 1xN struct array (what the official .mat holds) from dicts; missing fields are empty."""
    fields = sorted({k for d in items for k in d})
    out = np.zeros((1, len(items)), dtype=[(f, object) for f in fields])
    for i, d in enumerate(items):
        for f in fields:
            out[0, i][f] = d.get(f, np.zeros((0, 0)))
    return out


def _official_mat(path, point_x=11.0):
    head_top = {"id": 9, "x": 31.0, "y": 6.0, "is_visible": np.array([])}  # is_visible may be empty in the release
    points = _struct_array([{"id": 0, "x": point_x, "y": 21.0, "is_visible": 1}, head_top])
    annotated = {"x1": 1.0, "y1": 2.0, "x2": 4.0, "y2": 6.0, "scale": 0.1}
    annotated |= {"objpos": {"x": 21.0, "y": 16.0}, "annopoints": {"point": points}}
    rects = _struct_array([annotated, {"scale": 0.2, "objpos": {"x": 5.0, "y": 6.0}}])  # the second: no joints
    annolist = _struct_array(
        [
            {"image": {"name": "000000001.jpg"}, "annorect": rects},
            {"image": {"name": "000000002.jpg"}, "annorect": rects},  # a test image: left out
        ]
    )
    scipy.io.savemat(path, {"RELEASE": {"annolist": annolist, "img_train": np.array([[1, 0]])}})


def test_mpii_official_mat_form(tmp_path):
    _image(tmp_path / "m" / "images", "000000001.jpg")
    _official_mat(tmp_path / "m" / mpii.OFFICIAL_MAT)
    prepare.prepare("mpii_human_pose", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    (r,) = _records("mpii_human_pose", "trainval", tmp_path / "tfds")
    assert r["keypoints"][0].tolist() == [10.0, 20.0, 1.0] and r["keypoints"][9].tolist() == [30.0, 5.0, 1.0]
    assert r["keypoints"][1:9, 2].sum() == 0
    np.testing.assert_allclose(r["box_center"], [20.0, 16.0 + 1.5 - 1], rtol=1e-6)
    assert r["keypoint_norm"] == pytest.approx(0.6 * 5.0)  # head box 3 x 4


def test_mpii_errors_name_the_file_and_field(tmp_path):
    _mpii_json_tree(tmp_path / "m")
    (tmp_path / "m" / "annot" / "gt_valid.mat").unlink()
    with pytest.raises(base.ManualDataError, match="gt_valid.mat"):
        prepare.prepare("mpii_human_pose", data_dir=tmp_path / "a", manual_dir=tmp_path / "m")
    bad = json.loads((tmp_path / "m" / "annot" / "train.json").read_text())
    bad[1]["joints"] = bad[1]["joints"][:3]
    (tmp_path / "m" / "annot" / "train.json").write_text(json.dumps(bad))
    with pytest.raises(pose_records.AnnotationError, match=r"train.json: entry 1: field 'joints'"):
        prepare.prepare("mpii_human_pose", data_dir=tmp_path / "b", manual_dir=tmp_path / "m")
    with pytest.raises(base.ManualDataError, match="mpii_human_pose_v1_u12_1.mat"):
        prepare.prepare("mpii_human_pose", data_dir=tmp_path / "c", manual_dir=tmp_path / "m" / "images")
    _official_mat(tmp_path / "o.mat", point_x="eleven")
    with pytest.raises(pose_records.AnnotationError, match=r"o.mat: RELEASE.annolist\(1\).annorect\(1\)"):
        mpii.read_official(tmp_path / "o.mat")


# --------------------------------------------------------------------------------------------------- COCO
def _coco_annotations(persons_ok=True):
    kp = np.zeros((K_COCO, 3))
    kp[0] = (10, 12, 2)
    kp[5] = (20, 22, 1)  # labelled, occluded: v 1 as well
    person = {"id": 7, "image_id": 139, "category_id": 1, "iscrowd": 0, "bbox": [5, 6, 20, 30], "area": 400.0}
    anns = [
        person | {"keypoints": kp.ravel().tolist(), "num_keypoints": 2},
        person | {"id": 8, "iscrowd": 1, "keypoints": kp.ravel().tolist()},  # crowd: skipped
        person | {"id": 9, "keypoints": [0] * 51, "num_keypoints": 0},  # no keypoint: skipped
        person | {"id": 10, "category_id": 2, "keypoints": kp.ravel().tolist()},  # not a person
        person | {"id": 11, "bbox": [-10, 45, 5, 20], "keypoints": kp.ravel().tolist()},  # box outside: skipped
    ]
    if not persons_ok:
        anns[0]["bbox"] = [1, 2, 3]
    images = [{"id": 139, "file_name": "000000000139.jpg", "width": 50, "height": 40}]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _coco_tree(root, persons_ok=True):
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        _image(root / split, "000000000139.jpg")
        path = root / "annotations" / f"person_keypoints_{split}.json"
        path.write_text(json.dumps(_coco_annotations(persons_ok)))


def test_coco_round_trip_one_record_per_labelled_person(tmp_path):
    _coco_tree(tmp_path / "c")
    prepare.prepare("coco_keypoints", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "c")
    for split in ("train", "val"):
        (r,) = _records("coco_keypoints", split, tmp_path / "tfds")
        assert r["person_id"] == 7 and r["image_id"] == "000000000139"
        assert r["keypoints"][0].tolist() == [10, 12, 1] and r["keypoints"][5].tolist() == [20, 22, 1]
        np.testing.assert_allclose(r["box_center"], [5 + 19 / 2, 6 + 29 / 2])  # SimpleBaseline's clipped box
        np.testing.assert_allclose(r["box_size"], [19, 29])
        assert r["area"] == 400 and r["keypoint_norm"] == 20


def test_coco_errors_name_the_file_and_field(tmp_path):
    _coco_tree(tmp_path / "c", persons_ok=False)
    where = r"person_keypoints_train2017.json: annotations\[0\]: .*'bbox'"
    with pytest.raises(pose_records.AnnotationError, match=where):
        prepare.prepare("coco_keypoints", data_dir=tmp_path / "a", manual_dir=tmp_path / "c")
    _coco_tree(tmp_path / "d")
    (tmp_path / "d" / "val2017" / "000000000139.jpg").unlink()
    with pytest.raises(base.ManualDataError, match=r"val2017/000000000139.jpg"):
        prepare.prepare("coco_keypoints", data_dir=tmp_path / "b", manual_dir=tmp_path / "d")
    (tmp_path / "d" / "annotations" / "person_keypoints_val2017.json").write_text("{")
    with pytest.raises(pose_records.AnnotationError, match="person_keypoints_val2017.json: not valid JSON"):
        prepare.prepare("coco_keypoints", data_dir=tmp_path / "b", manual_dir=tmp_path / "d")


# --------------------------------------------------------------------------------------------------- crops
def _dotted_record(rng, k=6, size=(160, 160)):
    """A black image with a white disc (radius 3) at each of ``k`` joints, spread apart, and its person box.

    The joints sit on pixel centres, where a rasterised disc's centroid is exactly the joint."""
    h, w = size
    grid = [(x, y) for y in range(50, 120, 22) for x in range(45, 125, 22)]
    picks = rng.choice(len(grid), k, replace=False)
    keypoints = np.array([[*grid[i], 1.0] for i in picks]) + np.r_[rng.integers(-2, 3, 2), 0]  # on pixel centres
    image = np.zeros((h, w, 3), np.uint8)
    ys, xs = np.mgrid[:h, :w]
    for x, y, _ in keypoints:
        image[(xs - x) ** 2 + (ys - y) ** 2 <= 9] = 255
    record = {"image": image, "image_id": "000000000042", "person_id": 3, "keypoints": keypoints.astype(np.float32)}
    return record | {"box_center": np.array([85.0, 85.0]), "box_size": np.array([60.0, 80.0]), "keypoint_norm": 10.0}


def test_joints_follow_the_warp_of_the_image():
    """Property: for random scale, rotation and flip, every joint marked visible sits on its painted disc in the
    crop (intensity centroid within 0.3 px); the flip swaps the pairs; joints off the crop are marked invisible."""
    augment = pose_pipeline.PoseAugment(6, ((0, 1), (2, 3)), scale_factor=0.3, rotation_factor=40, rotation_prob=0.6)
    transform = pose_pipeline.PoseTrainTransform((128, 96), augment)
    flips = checked = 0
    for seed in range(16):
        record = _dotted_record(np.random.default_rng(seed))
        rng = np.random.default_rng(100 + seed)
        out = transform(record, rng)
        img = denormalise(out["image"])[..., 0].astype(np.float64)
        weight = np.maximum(img - 140.0, 0.0)  # the discs only (background black, padding the mean colour)
        ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
        # the recorded crop box and inverse map give back the original joints
        back = affine.apply(out["affine"], out["keypoints"][:, :2])
        source = record["keypoints"][:, :2]
        swapped = not np.allclose(back[out["keypoints"][:, 2] > 0], source[out["keypoints"][:, 2] > 0], atol=1e-3)
        flips += swapped
        perm = augment.flip_permutation() if swapped else np.arange(6)
        for k, (x, y, v) in enumerate(out["keypoints"]):
            inside = -0.5 <= x < 95.5 and -0.5 <= y < 127.5
            if v == 0:
                assert x == 0 and y == 0
                continue
            assert inside
            np.testing.assert_allclose(back[k], source[perm[k]], atol=1e-3)
            if not (6 <= x <= 89 and 6 <= y <= 121):
                continue  # a disc cut by the crop's edge has its centroid off the joint
            near = ((xs - x) ** 2 + (ys - y) ** 2 <= 6**2) * weight
            assert near.sum() > 0
            checked += 1
            centroid = np.array([(near * xs).sum(), (near * ys).sum()]) / near.sum()
            np.testing.assert_allclose(centroid, [x, y], atol=0.3)
        assert out["keypoint_norm"] == pytest.approx(10.0 * affine.scale_of(affine.invert(out["affine"])), rel=1e-5)
    assert 0 < flips < 16 and checked > 40  # both branches were exercised, on many joints


def test_pose_batches_from_the_pipeline(tmp_path):
    _coco_tree(tmp_path / "c")
    prepare.prepare("coco_keypoints", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "c")
    source = pipeline.data_source("coco_keypoints", "val", str(tmp_path / "tfds"))
    augment = pose_pipeline.augment_for("coco_keypoints")
    size = (32, 24)
    kwargs = dict(crop_size=size, batch_size=2, process_index=0, process_count=1, pose=augment)
    batch = next(iter(pipeline.train_dataset(source, seed=0, **kwargs)))
    assert batch["image"].shape == (2, 32, 24, 3) and batch["image"].dtype == np.float32
    assert batch["keypoints"].shape == (2, K_COCO, 3) and batch["keypoints"].dtype == np.float32
    assert batch["keypoint_norm"].shape == (2,) and batch["image_id"].tolist() == [139, 139]
    flip = np.tile(joints.COCO.flip_permutation(), (2, 1))  # what the Pose task's flip test reads, per example
    np.testing.assert_array_equal(batch["keypoint_flip"], flip)
    assert batch["keypoint_flip"].dtype == np.int32
    (batch,) = list(pipeline.eval_dataset(source, **kwargs))
    assert batch["valid"].tolist() == [True, False] and batch["person_id"].tolist() == [7, -1]
    np.testing.assert_array_equal(batch["keypoint_flip"], flip)  # padding slots too: the batch stacks
    assert set(tasks.get(tasks.POSE).data_keys) <= set(batch)
    # evaluation: no randomness; the box (19 x 29 -> aspect 0.75 -> 21.75 x 29, x1.25) fills the crop
    np.testing.assert_allclose(batch["scale"][0], np.array([21.75, 29.0]) * 1.25, rtol=1e-5)
    expected = affine.apply(affine.invert(batch["affine"][0]), [[10.0, 12.0]])[0]
    np.testing.assert_allclose(batch["keypoints"][0, 0, :2], expected, atol=1e-4)
    assert batch["keypoints"][0, 0, 2] == 1 and batch["keypoints"][0, 1, 2] == 0
    assert batch["area"][0] == pytest.approx(400 * (24 / (21.75 * 1.25)) ** 2, rel=1e-5)


def test_flip_mirrors_the_crop_exactly():
    """The flipped crop is the unflipped one mirrored (x -> W - 1 - x), pixels and joints: what the flip test's
    mirror-back relies on."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    record = {"image": image, "keypoints": np.array([[20.3, 30.7, 1.0], [41.0, 12.5, 1.0]], np.float32)}
    record |= {"box_center": np.array([33.2, 24.9]), "box_size": np.array([30.0, 40.0])}
    box = affine.fixed_aspect(record["box_size"], 24 / 32, 1.25)
    plain = pose_pipeline.crop_example(record, (32, 24), record["box_center"], box, [1, 0], rotation=17.0)
    mirrored = pose_pipeline.crop_example(record, (32, 24), record["box_center"], box, [1, 0], 17.0, flip=True)
    np.testing.assert_allclose(mirrored["image"], plain["image"][:, ::-1], atol=0.02)
    np.testing.assert_allclose(mirrored["keypoints"][::-1, 0], 23 - plain["keypoints"][:, 0], atol=1e-4)
    np.testing.assert_allclose(mirrored["keypoints"][::-1, 1], plain["keypoints"][:, 1], atol=1e-4)


def test_detection_boxes_as_an_evaluation_source(tmp_path):
    _coco_tree(tmp_path / "c")
    prepare.prepare("coco_keypoints", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "c")
    source = pipeline.data_source("coco_keypoints", "val", str(tmp_path / "tfds"))
    detections = [
        {"image_id": 139, "bbox": np.array([4.0, 5.0, 12.0, 16.0]), "score": 0.8},
        {"image_id": 139, "bbox": np.array([20.0, 10.0, 9.0, 12.0]), "score": 0.4},
        {"image_id": 999, "bbox": np.array([0.0, 0.0, 9.0, 12.0]), "score": 0.9},  # no record of that image
    ]
    boxes = pose_pipeline.DetectionSource(source, detections, K_COCO)
    assert len(boxes) == 2 and boxes.skipped == 1
    augment = pose_pipeline.augment_for("coco_keypoints")
    (batch,) = list(
        pipeline.eval_dataset(boxes, crop_size=(32, 24), batch_size=2, process_count=1, process_index=0, pose=augment)
    )
    np.testing.assert_allclose(batch["box_score"], [0.8, 0.4])
    np.testing.assert_allclose(batch["center"], [[10.0, 13.0], [24.5, 16.0]])
    np.testing.assert_allclose(batch["scale"][0], np.array([12.0, 16.0]) * 1.25)  # already 3:4
    assert batch["image_id"].tolist() == [139, 139] and batch["keypoints"][..., 2].sum() == 0


@pytest.mark.parametrize("skeleton", [joints.MPII, joints.COCO], ids=lambda s: s.name)
def test_joint_tables_pair_left_with_right(skeleton):
    perm = skeleton.flip_permutation()
    assert sorted(perm) == list(range(skeleton.num_joints)) and (perm[perm] == np.arange(skeleton.num_joints)).all()
    for k, name in enumerate(skeleton.names):
        mirrored = name.replace("left", "@").replace("right", "left").replace("@", "right")
        mirrored = mirrored.replace("l_", "@").replace("r_", "l_").replace("@", "r_") if name[1] == "_" else mirrored
        assert skeleton.names[perm[k]] == mirrored, (name, skeleton.names[perm[k]])
    assert len(joints.COCO_OKS_SIGMAS) == joints.COCO.num_joints
    with pytest.raises(joints.UnknownSkeletonError, match="voc_sbd"):
        pose_pipeline.augment_for("voc_sbd")


@pytest.mark.parametrize("skeleton", [joints.MPII, joints.COCO], ids=lambda s: s.name)
def test_limbs_join_every_joint_and_mirror_onto_limbs(skeleton):
    """The pictures' limbs: one connected tree over all joints (MPII) / the face and body (COCO), and a mirror
    image maps each limb onto a limb (so a flipped prediction draws the same figure)."""
    perm = skeleton.flip_permutation()
    limbs = {frozenset(e) for e in skeleton.limbs}
    assert len(limbs) == len(skeleton.limbs) and all(len(e) == 2 for e in limbs)
    assert {frozenset(int(perm[j]) for j in e) for e in limbs} == limbs
    reached, frontier = {0}, [0]
    while frontier:
        j = frontier.pop()
        for e in limbs:
            if j in e and not e <= reached:
                (other,) = e - {j}
                reached.add(other)
                frontier.append(other)
    assert reached == set(range(skeleton.num_joints))


def test_configs_crop_persons_of_their_own_splits_and_aspect():
    from configs import coco_pose_train, mpii_train
    from fdn.data import coco_keypoints

    for module, skeleton, splits in (
        (mpii_train, joints.MPII, ("train", "valid")),  # the JSON form's splits (fdn.data.mpii)
        (coco_pose_train, joints.COCO, tuple(coco_keypoints.SPLITS)),
    ):
        for arg in ("", "tiny"):
            c = module.get_config(arg)
            assert (c.data.train_split, c.data.eval_split) == splits and c.eval.skeleton == skeleton.limbs
            assert c.model.num_classes == skeleton.num_joints
            assert pose_pipeline.person_crops(c.data.name) == pose_pipeline.augment_for(skeleton.name)
            crop = pose_pipeline.train_crop(c.data.name, c.data.crop_size, c.data.crop_width)
            assert crop == tuple(c.eval.crop_size)  # training and evaluation crops of the same shape
    assert tuple(coco_pose_train.get_config().eval.crop_size) == (256, 192)
    assert pose_pipeline.train_crop("coco_keypoints", 32) == (32, 24)
    assert pose_pipeline.train_crop("coco_keypoints", 32, 32) == (32, 32)  # an explicit width wins
    assert pose_pipeline.train_crop("voc_sbd", 500) == (500, 500)
    assert pose_pipeline.person_crops("fdn_shapes") is None  # its keypoints ride the whole-image crops


@pytest.mark.slow
def test_mpii_trains_and_evaluates_per_joint(tmp_path):
    """``fdn.train`` on a miniature MPII tree (configs/mpii_train.py:tiny, 3 steps) and ``fdn.evaluate``'s PCKh
    table of the checkpoint it wrote, one row per joint by name."""
    import os
    from pathlib import Path

    import jax

    from configs import mpii_train
    from fdn.serve import checkpoint
    from fdn.serve.evaluation import evaluate_checkpoint
    from fdn.train import loop as train_loop

    jax.config.update("jax_compilation_cache_dir", os.environ.get("FDN_TEST_XLA_CACHE", "/tmp/fdn_test_xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    _mpii_json_tree(tmp_path / "m", gt_shift=0.0)
    prepare.prepare("mpii_human_pose", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "m")
    c = mpii_train.get_config("tiny")
    c.data.data_dir = str(tmp_path / "tfds")
    c.optim.steps_per_epoch = 1
    train_loop.run(c, tmp_path / "run", log=lambda *a: None)
    best = Path(tmp_path / "run" / "best_model")
    spec, _, info = checkpoint.load_model(best)
    meta = info["metadata"]
    assert spec.task == "pose" and spec.decoder.num_classes == K_MPII and meta["eval_split"] == "valid"
    assert meta["class_names"] == list(joints.MPII.names) and 1 <= meta["step"] <= 3
    assert meta["eval"]["skeleton"] == [list(e) for e in joints.MPII.limbs]
    scores, text = evaluate_checkpoint(best)
    lines = text.splitlines()
    assert "mpii_human_pose/valid, 1 images" in lines[0] and "flip test" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2 : 2 + K_MPII]}
    assert list(rows) == list(joints.MPII.names)
    # each row counts that joint of the validation person where its person crop shows it (joint 5 is missing)
    (record,) = _records("mpii_human_pose", "valid", tmp_path / "tfds")
    crop = pose_pipeline.PoseEvalTransform(tuple(c.eval.crop_size), pose_pipeline.augment_for("mpii_human_pose"))
    shown = crop(record)["keypoints"][:, 2].astype(int).tolist()
    assert [int(r[1]) for r in rows.values()] == shown and sum(shown) >= 4 and shown[5] == 0
    assert "PCK@0.5" in lines[-1] and 0.0 <= scores["pck"] <= 1.0

"""Pose metrics on hand-made cases with known answers: MPII PCKh (per joint, groups, the weighted mean without
pelvis and thorax), COCO OKS and AP (matching, ignored ground truths, the summary), OKS-NMS, the file readers, and
agreement with pycocotools where it is installed."""

import json

import numpy as np
import pytest

from fdn.pose import joints, oks, oks_pycocotools, pckh

K = joints.COCO.num_joints


# --------------------------------------------------------------------------------------------------- PCKh
def test_pckh_per_joint_groups_and_mean():
    gt = np.zeros((2, 16, 2))
    visible = np.ones((2, 16), bool)
    visible[1, 0] = False  # r-ankle of person 1 not visible: it does not count
    head = np.array([10.0, 20.0])  # threshold 0.5 -> 5 px and 10 px
    pred = gt.copy()
    pred[0, :, 0] = 5.0  # person 0: every joint at exactly 0.5 head sizes -> correct (<=)
    pred[1, :, 0] = 10.5  # person 1: every joint just beyond -> wrong
    pred[1, 9, 0] = 0.0  # ... but its head top is exact
    per, count = pckh.per_joint(pred, gt, visible, head)
    assert count.tolist() == [1] + [2] * 15
    assert per[0] == 100 and per[9] == 100 and per[1] == 50 and per[15] == 50
    table = pckh.table(pred, gt, visible, head)
    assert table["Head"] == 100 and table["Ankle"] == 75 and table["Wrist"] == 50
    # mean: visible-weighted over the 14 joints other than pelvis (6) and thorax (7): (1 + 2 + 12 x 1) / (1 + 13 x 2)
    assert table["Mean"] == pytest.approx(100 * 15 / 27)
    assert table["Mean@0.1"] == pytest.approx(100 * 1 / 27)  # at 0.11 only person 1's exact head top hits
    pred[:, 6:8] = 1e6  # pelvis and thorax do not move the mean
    assert pckh.table(pred, gt, visible, head)["Mean"] == pytest.approx(100 * 15 / 27)


def test_pckh_mean_at_01_uses_the_references_threshold_011():
    # Every joint 1.05 px off with head size 10: 0.105 head sizes, within 0.11 (the reference's "Mean@0.1" is
    # pckAll[11] = threshold 0.11) but not within 0.1; and within 0.5.
    gt = np.zeros((1, 16, 2))
    pred = gt.copy()
    pred[..., 0] = 1.05
    table = pckh.table(pred, gt, np.ones((1, 16), bool), np.array([10.0]))
    assert table["Mean@0.1"] == 100.0 and table["Mean"] == 100.0


# --------------------------------------------------------------------------------------------------- OKS
def _person(image_id, xy, area=400.0, v=2, **extra):
    kp = np.zeros((K, 3))
    kp[:, :2] = xy
    kp[:, 2] = v
    x0, y0 = kp[:, :2].min(0)
    x1, y1 = kp[:, :2].max(0)
    gt = {"image_id": image_id, "keypoints": kp, "area": area, "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}
    return gt | {"num_keypoints": int((kp[:, 2] > 0).sum())} | extra


def _det(image_id, xy, score):
    kp = np.ones((K, 3))
    kp[:, :2] = xy
    return {"image_id": image_id, "keypoints": kp, "score": score}


def _layout(rng, offset=(0, 0)):
    return rng.uniform(0, 60, (K, 2)) + np.asarray(offset)


def test_oks_formula():
    rng = np.random.default_rng(0)
    xy = _layout(rng)
    gt = _person(1, xy, area=900.0)
    gt["keypoints"][3:, 2] = 0  # only the first 3 joints labelled
    moved = xy.copy()
    moved[0, 0] += 3.0
    moved[5:] += 50.0  # unlabelled joints do not count
    expected = (np.exp(-9.0 / (2 * 900.0 * (2 * joints.COCO_OKS_SIGMAS[0]) ** 2)) + 2) / 3
    assert oks.oks(gt, [_det(1, xy, 1), _det(1, moved, 1)]) == pytest.approx([1.0, expected])


def test_ap_of_a_hand_made_case():
    rng = np.random.default_rng(1)
    a, b = _layout(rng), _layout(rng, (200, 0))
    gts = [_person(1, a, area=4000.0, id=1), _person(1, b, area=4000.0, id=2)]
    dets = [_det(1, a, 0.9), _det(1, a + 300, 0.8)]  # one perfect, one far off; nothing for b
    stats = oks.evaluate(gts, dets)
    # at every threshold: TP then FP, 2 ground truths -> recall 0.5; precision 1 up to recall 0.5 (51 of 101 points)
    assert stats["AP"] == pytest.approx(51 / 101) and stats["AP50"] == pytest.approx(51 / 101)
    assert stats["AR"] == pytest.approx(0.5)
    assert stats["AP (M)"] == pytest.approx(51 / 101) and stats["AP (L)"] == -1  # area 4000: no large ground truth
    # the perfect detection scored lower than the bad one: precision 0.5 at recall 0.5
    dets[0]["score"] = 0.7
    assert oks.evaluate(gts, dets)["AP"] == pytest.approx(0.5 * 51 / 101)
    # a crowd ground truth is ignored: a detection on it is neither TP nor FP, and it needs no match
    crowd = _person(1, a + 300, iscrowd=1, id=3)
    assert oks.evaluate([*gts, crowd], [_det(1, a, 0.9), _det(1, a + 300, 0.8)])["AP"] == pytest.approx(51 / 101)
    assert oks.evaluate([gts[0], crowd], [_det(1, a, 0.9), _det(1, a + 300, 0.8)])["AP"] == pytest.approx(1.0)
    # an image without people (image_ids) makes its detections false positives
    stats = oks.evaluate(gts[:1], [_det(1, a, 0.5), _det(2, a, 0.9)], image_ids=[1, 2])
    assert stats["AP"] == pytest.approx(0.5)


def test_rescore_and_oks_nms():
    kp = np.zeros((K, 3))
    kp[:4, 2] = [0.9, 0.5, 0.1, 0.3]  # 0.1 is below the 0.2 threshold
    assert oks.rescore(kp, box_score=0.5) == pytest.approx(0.5 * (0.9 + 0.5 + 0.3) / 3)
    rng = np.random.default_rng(2)
    xy = _layout(rng)
    dets = [_det(1, xy, 0.6), _det(1, xy + 0.5, 0.9), _det(1, xy + 100, 0.3)]
    for d in dets:
        d["area"] = 3600.0
    assert oks.oks_nms(dets) == [1, 2]  # the near-duplicate with the lower score goes


def test_readers_name_file_and_field(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": [0] * (3 * K), "score": 0.5}]))
    (det,) = oks.read_keypoint_results(path)
    assert det["keypoints"].shape == (K, 3) and det["score"] == 0.5
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": [0] * 5, "score": 0.5}]))
    with pytest.raises(oks.ResultsFileError, match="results.json: entry 0: field 'keypoints' has 5"):
        oks.read_keypoint_results(path)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}, {"image_id": 2}])
    )
    with pytest.raises(oks.ResultsFileError, match="boxes.json: entry 1 has no field 'category_id'"):
        oks.read_person_detections(boxes)
    with pytest.raises(oks.ResultsFileError, match="missing COCO person detection file"):
        oks.read_person_detections(tmp_path / "none.json")
    gt = tmp_path / "gt.json"
    ann = {"image_id": 1, "category_id": 1, "keypoints": [0] * (3 * K), "area": 10, "bbox": [0, 0, 1, 1]}
    gt.write_text(json.dumps({"images": [{"id": 1}, {"id": 2}], "annotations": [ann]}))
    gts, ids = oks.read_ground_truth(gt)
    assert ids == [1, 2] and gts[0]["num_keypoints"] == 0


def _random_case(rng, n_images=6):
    gts, dets = [], []
    for image in range(1, n_images + 1):
        for _ in range(rng.integers(0, 4)):
            xy = _layout(rng, rng.uniform(0, 300, 2))
            area = float(rng.choice([500.0, 3000.0, 20000.0]))
            gt = _person(image, xy, area=area, id=len(gts) + 1, iscrowd=int(rng.random() < 0.1))
            gt["keypoints"][rng.random(K) < 0.3, 2] = 0
            gt["num_keypoints"] = int((gt["keypoints"][:, 2] > 0).sum())
            gts.append(gt)
            if rng.random() < 0.8:
                dets.append(_det(image, xy + rng.normal(0, rng.choice([1.0, 4.0, 12.0]), (K, 2)), float(rng.random())))
        for _ in range(rng.integers(0, 3)):
            dets.append(_det(image, _layout(rng, rng.uniform(0, 300, 2)), float(rng.random())))
    return gts, dets


@pytest.mark.skipif(not oks_pycocotools.available(), reason="pycocotools not installed (the optional pose extra)")
def test_agrees_with_pycocotools():
    rng = np.random.default_rng(3)
    for _ in range(3):
        gts, dets = _random_case(rng)
        ours = oks.evaluate(gts, dets, image_ids=range(1, 8))
        theirs = oks_pycocotools.evaluate(gts, dets, image_ids=range(1, 8))
        assert ours == pytest.approx(theirs, abs=1e-12), (ours, theirs)
        assert 0 < ours["AP"] < 1


def test_person_results_rescore_and_suppress():
    rng = np.random.default_rng(4)
    xy = _layout(rng)
    kp = np.concatenate([np.stack([xy, xy + 0.3, xy + 80]), np.full((3, K, 1), 0.5)], axis=2)
    kp[2, :, 2] = 0.1  # every joint below the 0.2 threshold: score 0
    results = oks.person_results([5, 5, 5], kp, box_scores=[1.0, 0.9, 1.0], areas=[3600.0] * 3)
    assert [r["score"] for r in results] == pytest.approx([0.5, 0.0])  # the near-duplicate (0.45) is suppressed
    np.testing.assert_allclose(results[1]["keypoints"][:, :2], xy + 80)

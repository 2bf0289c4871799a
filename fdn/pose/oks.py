"""COCO keypoint AP in NumPy: OKS, the COCOeval matching and summary, SimpleBaseline's rescoring and OKS-NMS,
and the readers of COCO's annotation, keypoint-result and person-detection files.

Why our own: the metric is short, and the default install should not need pycocotools (a compiled package).
``evaluate`` follows ``pycocotools.cocoeval.COCOeval`` with ``iouType='keypoints'`` step by step (one category,
``maxDets`` 20, OKS thresholds 0.50:0.05:0.95, 101 recall points, area ranges all / medium / large); ground truths
that are crowds or have no labelled keypoint are *ignored*, not removed (a detection matched to them is neither a
true nor a false positive). ``fdn.pose.oks_pycocotools`` runs pycocotools itself where it is installed (the
``pose`` extra); the tests check that both agree.

Ground truths and detections are dicts as in COCO's JSON, keypoints flat ``[x, y, v] * K`` or (K, 3):
ground truth ``image_id, keypoints, area, bbox, iscrowd, num_keypoints`` (``id`` optional), detection
``image_id, keypoints, score`` (its ``area`` is its keypoints' bounding-box area, as ``COCO.loadRes``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fdn.errors import UserError
from fdn.pose import joints

OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 20
AREA_RANGES = {"all": (0.0, 1e10), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
STATS = ("AP", "AP50", "AP75", "AP (M)", "AP (L)", "AR", "AR50", "AR75", "AR (M)", "AR (L)")
IN_VIS_THRE = 0.2  # SimpleBaseline's rescoring: joints scoring above this count towards the person's score
NMS_THRE = 0.9  # and its OKS-NMS threshold
_EPS = np.spacing(1)


class ResultsFileError(UserError, ValueError):
    """A keypoint-result, detection or annotation file that cannot be read: names the file and the field."""


def _kpts(value) -> np.ndarray:
    return np.asarray(value, np.float64).reshape(-1, 3)


def oks(gt, dets, sigmas=joints.COCO_OKS_SIGMAS) -> np.ndarray:
    """OKS (len(dets),) of ``dets`` against one ground truth, as ``COCOeval.computeOks``.

    ``exp(-d^2 / (2 area (2 sigma)^2))`` averaged over the ground truth's labelled keypoints; a ground truth without
    any measures the distance outside its box doubled on each side instead.
    """
    variances = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    g = _kpts(gt["keypoints"])
    xg, yg, vg = g[:, 0], g[:, 1], g[:, 2]
    labelled = vg > 0
    x, y, w, h = (float(v) for v in gt["bbox"])
    out = np.zeros(len(dets))
    for i, det in enumerate(dets):
        d = _kpts(det["keypoints"])
        xd, yd = d[:, 0], d[:, 1]
        if labelled.any():
            dx, dy = xd - xg, yd - yg
        else:
            dx = np.maximum(0, (x - w) - xd) + np.maximum(0, xd - (x + 2 * w))
            dy = np.maximum(0, (y - h) - yd) + np.maximum(0, yd - (y + 2 * h))
        e = (dx**2 + dy**2) / variances / (float(gt["area"]) + _EPS) / 2
        if labelled.any():
            e = e[labelled]
        out[i] = np.sum(np.exp(-e)) / e.shape[0]
    return out


def det_area(det) -> float:
    """A detection's area as ``COCO.loadRes`` sets it: its keypoints' bounding box."""
    d = _kpts(det["keypoints"])
    return float((d[:, 0].max() - d[:, 0].min()) * (d[:, 1].max() - d[:, 1].min()))


def _ignored(gt) -> bool:
    return bool(gt.get("iscrowd", 0)) or gt.get("num_keypoints", int((_kpts(gt["keypoints"])[:, 2] > 0).sum())) == 0


def _match_image(gts, dets, ious, area_range):
    """COCOeval.evaluateImg for one image and area range: (det scores, matched (T, D), det ignored (T, D),
    gt ignored (G,)); ``dets`` sorted by score, ``ious`` (D, G)."""
    lo, hi = area_range
    gt_ignore = np.array([_ignored(g) or not lo <= g["area"] <= hi for g in gts], bool)
    order = np.argsort(gt_ignore, kind="mergesort")
    gts, gt_ignore = [gts[i] for i in order], gt_ignore[order]
    ious = ious[:, order] if len(gts) else ious
    crowd = [bool(g.get("iscrowd", 0)) for g in gts]
    t_count, d_count = len(OKS_THRESHOLDS), len(dets)
    gt_taken = np.zeros((t_count, len(gts)), bool)
    matched = np.zeros((t_count, d_count), bool)
    det_ignore = np.zeros((t_count, d_count), bool)
    for t, threshold in enumerate(OKS_THRESHOLDS):
        for d in range(d_count):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(len(gts)):
                if gt_taken[t, g] and not crowd[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break  # ignored ground truths come last: a real match is never replaced by one
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m == -1:
                continue
            det_ignore[t, d] = gt_ignore[m]
            matched[t, d] = True
            gt_taken[t, m] = True
    outside = np.array([not lo <= det_area(det) <= hi for det in dets], bool)
    det_ignore |= ~matched & outside[None, :]
    return np.array([det["score"] for det in dets], np.float64), matched, det_ignore, gt_ignore


def _precision_recall(scores, matched, det_ignore, num_gt):
    """(precision (T, R), recall (T,)) of the detections pooled over images (COCOeval.accumulate); -1 if no gt."""
    t_count = len(OKS_THRESHOLDS)
    precision = -np.ones((t_count, len(RECALL_POINTS)))
    recall = -np.ones(t_count)
    if num_gt == 0:
        return precision, recall
    order = np.argsort(-scores, kind="mergesort")
    matched, det_ignore = matched[:, order], det_ignore[:, order]
    tps = np.cumsum(matched & ~det_ignore, axis=1).astype(np.float64)
    fps = np.cumsum(~matched & ~det_ignore, axis=1).astype(np.float64)
    for t in range(t_count):
        tp, fp = tps[t], fps[t]
        rc = tp / num_gt
        pr = tp / (fp + tp + _EPS)
        recall[t] = rc[-1] if len(tp) else 0.0
        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr  # the precision envelope
        q = np.zeros(len(RECALL_POINTS))
        idx = np.searchsorted(rc, RECALL_POINTS, side="left")
        valid = idx < len(pr)  # recall points beyond the last detection's recall keep precision 0
        q[valid] = pr[idx[valid]]
        precision[t] = q
    return precision, recall


def evaluate(gts, dets, image_ids=None, sigmas=joints.COCO_OKS_SIGMAS, max_dets=MAX_DETS) -> dict:
    """The 10 numbers of ``COCOeval.summarize`` for keypoints (``STATS``), from ground truths and detections.

    ``image_ids``: the images evaluated (pycocotools: every image of the annotation file, so detections on an
    image without people count as false positives); default the images of ``gts``. Detections on other images
    are left out (pycocotools refuses them). -1 where a number is undefined (no ground truth in an area range).
    """
    by_image: dict = {i: ([], []) for i in (image_ids if image_ids is not None else ())}
    for g in gts:
        by_image.setdefault(g["image_id"], ([], []))[0].append(g)
    for d in dets:
        if d["image_id"] in by_image:
            by_image[d["image_id"]][1].append(d)
    results = {}
    for area_name, area_range in AREA_RANGES.items():
        scores, matched, det_ignore, num_gt = [], [], [], 0
        for image_gts, image_dets in by_image.values():
            image_dets = sorted(image_dets, key=lambda d: -d["score"])[:max_dets]  # stable, as mergesort
            if not image_gts and not image_dets:
                continue
            ious = np.zeros((len(image_dets), len(image_gts)))
            for j, g in enumerate(image_gts):
                ious[:, j] = oks(g, image_dets, sigmas)
            s, m, di, gi = _match_image(image_gts, image_dets, ious, area_range)
            scores.append(s)
            matched.append(m)
            det_ignore.append(di)
            num_gt += int((~gi).sum())
        t = len(OKS_THRESHOLDS)
        precision, recall = _precision_recall(
            np.concatenate(scores) if scores else np.zeros(0),
            np.concatenate(matched, axis=1) if matched else np.zeros((t, 0), bool),
            np.concatenate(det_ignore, axis=1) if det_ignore else np.zeros((t, 0), bool),
            num_gt,
        )
        results[area_name] = (precision, recall)

    def ap(area, threshold=None):
        p = results[area][0]
        if threshold is not None:
            p = p[np.isclose(OKS_THRESHOLDS, threshold)]
        p = p[p > -1]
        return float(p.mean()) if p.size else -1.0

    def ar(area, threshold=None):
        r = results[area][1]
        if threshold is not None:
            r = r[np.isclose(OKS_THRESHOLDS, threshold)]
        r = r[r > -1]
        return float(r.mean()) if r.size else -1.0

    values = (
        ap("all"),
        ap("all", 0.5),
        ap("all", 0.75),
        ap("medium"),
        ap("large"),
        ar("all"),
        ar("all", 0.5),
        ar("all", 0.75),
        ar("medium"),
        ar("large"),
    )
    return dict(zip(STATS, values))


def rescore(keypoints, box_score=1.0, threshold=IN_VIS_THRE) -> float:
    """SimpleBaseline's person score: ``box_score`` x the mean score of the joints scoring above ``threshold``."""
    scores = _kpts(keypoints)[:, 2]
    above = scores[scores > threshold]
    return float(box_score * (above.mean() if above.size else 0.0))


def oks_nms(dets, threshold=NMS_THRE, sigmas=joints.COCO_OKS_SIGMAS) -> list[int]:
    """Indices of ``dets`` (one image; each with ``keypoints``, ``score`` and ``area``) kept by greedy OKS
    non-maximum suppression, as SimpleBaseline's ``oks_nms``: the overlap of two detections is their OKS over all
    joints with the mean of their areas as the scale (the area being the crop box's, ``scale`` w x h)."""
    variances = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    order = list(np.argsort([-d["score"] for d in dets], kind="mergesort"))
    keep = []
    while order:
        i, order = order[0], order[1:]
        keep.append(int(i))
        ref = _kpts(dets[i]["keypoints"])
        kept = []
        for j in order:
            d = _kpts(dets[j]["keypoints"])
            scale = (float(dets[i]["area"]) + float(dets[j]["area"])) / 2 + _EPS
            e = ((d[:, 0] - ref[:, 0]) ** 2 + (d[:, 1] - ref[:, 1]) ** 2) / variances / scale / 2
            if np.mean(np.exp(-e)) <= threshold:
                kept.append(j)
        order = kept
    return keep


def person_results(image_ids, keypoints, box_scores, areas, nms_threshold=NMS_THRE) -> list[dict]:
    """SimpleBaseline's COCO post-processing: one result per person crop -> ``evaluate``'s detections.

    ``keypoints`` (N, K, 3): x, y in image pixels and the joint's heatmap maximum; each person is rescored
    (``rescore`` with its ``box_scores``: 1 for ground-truth boxes, the detector's score otherwise), then each
    image's persons go through ``oks_nms`` with ``areas`` (the crop boxes' w x h).
    """
    by_image: dict = {}
    for i, image_id in enumerate(image_ids):
        det = {"image_id": image_id, "keypoints": np.asarray(keypoints[i], np.float64)}
        det |= {"score": rescore(keypoints[i], float(box_scores[i])), "area": float(areas[i])}
        by_image.setdefault(image_id, []).append(det)
    out = []
    for dets in by_image.values():
        out += [dets[i] for i in sorted(oks_nms(dets, nms_threshold))]
    return out


def _read_json_list(path, what):
    path = Path(path)
    if not path.exists():
        raise ResultsFileError(f"missing {what}: expected {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsFileError(f"{path}: not valid JSON ({e}); expected a {what}") from None
    return data, path


def _require(entry, key, i, path):
    if not isinstance(entry, dict) or key not in entry:
        raise ResultsFileError(f"{path}: entry {i} has no field {key!r}")
    return entry[key]


def read_keypoint_results(path, num_joints=joints.COCO.num_joints) -> list[dict]:
    """A COCO keypoint results file (``[{image_id, category_id, keypoints: [x, y, score] * K, score}]``)."""
    data, path = _read_json_list(path, "COCO keypoint results file")
    if not isinstance(data, list):
        raise ResultsFileError(f"{path}: expected a list of results, got {type(data).__name__}")
    out = []
    for i, entry in enumerate(data):
        kp = np.asarray(_require(entry, "keypoints", i, path), np.float64)
        if kp.size != 3 * num_joints:
            raise ResultsFileError(f"{path}: entry {i}: field 'keypoints' has {kp.size} numbers, not {3 * num_joints}")
        out.append(
            {
                "image_id": _require(entry, "image_id", i, path),
                "keypoints": kp.reshape(num_joints, 3),
                "score": float(_require(entry, "score", i, path)),
            }
        )
    return out


def read_person_detections(path, min_score=0.0, category=1) -> list[dict]:
    """Person boxes of a COCO detection results file (``[{image_id, category_id, bbox: [x, y, w, h], score}]``,
    e.g. SimpleBaseline's ``COCO_val2017_detections_AP_H_56_person.json``): category ``category`` only, score at
    least ``min_score``; each ``{image_id, bbox, score}``."""
    data, path = _read_json_list(path, "COCO person detection file")
    if not isinstance(data, list):
        raise ResultsFileError(f"{path}: expected a list of detections, got {type(data).__name__}")
    out = []
    for i, entry in enumerate(data):
        if _require(entry, "category_id", i, path) != category:
            continue
        score = float(_require(entry, "score", i, path))
        bbox = np.asarray(_require(entry, "bbox", i, path), np.float64)
        if bbox.shape != (4,):
            raise ResultsFileError(f"{path}: entry {i}: field 'bbox' must be [x, y, w, h], got shape {bbox.shape}")
        if score >= min_score:
            out.append({"image_id": _require(entry, "image_id", i, path), "bbox": bbox, "score": score})
    return out


def read_ground_truth(path, category=1) -> tuple[list[dict], list]:
    """(ground truths, image ids) of a COCO ``person_keypoints_*.json`` for ``evaluate``: the person annotations
    (crowds and persons without keypoints included: ``evaluate`` ignores them, as COCOeval) and every image."""
    data, path = _read_json_list(path, "COCO keypoint annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ResultsFileError(f"{path}: no 'annotations' list; expected a COCO person_keypoints_*.json")
    out = []
    for i, ann in enumerate(data["annotations"]):
        if _require(ann, "category_id", i, path) != category:
            continue
        gt = {key: _require(ann, key, i, path) for key in ("image_id", "keypoints", "area", "bbox")}
        gt["iscrowd"] = ann.get("iscrowd", 0)
        gt["num_keypoints"] = ann.get("num_keypoints", int((_kpts(gt["keypoints"])[:, 2] > 0).sum()))
        gt["id"] = ann.get("id", i + 1)
        out.append(gt)
    images = data.get("images", [])
    image_ids = [_require(image, "id", i, path) for i, image in enumerate(images)] if isinstance(images, list) else []
    return out, image_ids

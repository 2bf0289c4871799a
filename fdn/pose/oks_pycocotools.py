"""COCO keypoint AP through pycocotools itself (the optional ``pose`` extra: ``pip install fdn[pose]``).

The same inputs and outputs as ``fdn.pose.oks.evaluate``: use it to report numbers computed by the official
evaluator, or to check ours. Without pycocotools, ``evaluate`` raises a ``PycocotoolsMissing`` that says how to
install it.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from fdn.errors import UserError
from fdn.pose import joints, oks


class PycocotoolsMissing(UserError, ImportError):
    """pycocotools is not installed (it is optional)."""


def available() -> bool:
    try:
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate(gts, dets, image_ids=None, sigmas=joints.COCO_OKS_SIGMAS, verbose=False) -> dict:
    """``COCOeval(iouType='keypoints').summarize()`` on ``gts`` / ``dets`` (``fdn.pose.oks.evaluate``'s dicts)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise PycocotoolsMissing("pycocotools is not installed; pip install 'fdn[pose]' (or pycocotools)") from None
    ids = sorted(set(image_ids if image_ids is not None else (g["image_id"] for g in gts)))
    anns = []
    for i, g in enumerate(gts):
        kp = np.asarray(g["keypoints"], np.float64).ravel()
        ann = {
            "image_id": g["image_id"],
            "category_id": 1,
            "keypoints": kp.tolist(),
            "bbox": list(map(float, g["bbox"])),
        }
        ann |= {"area": float(g["area"]), "iscrowd": int(g.get("iscrowd", 0)), "id": int(g.get("id", i + 1))}
        ann["num_keypoints"] = int(g.get("num_keypoints", int((kp[2::3] > 0).sum())))
        anns.append(ann)
    coco_gt = COCO()
    coco_gt.dataset = {"images": [{"id": i} for i in ids], "annotations": anns, "categories": [{"id": 1}]}
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt.createIndex()
        results = [
            {
                "image_id": d["image_id"],
                "category_id": 1,
                "keypoints": np.asarray(d["keypoints"], np.float64).ravel().tolist(),
                "score": float(d["score"]),
            }
            for d in dets
            if d["image_id"] in set(ids)
        ]
        if not results:
            return dict.fromkeys(oks.STATS, -1.0)  # pycocotools cannot load an empty result list
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(oks.STATS, (float(v) for v in evaluator.stats)))

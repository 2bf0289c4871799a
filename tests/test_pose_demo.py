"""The pose demo end to end on fdn_shapes' keypoints: ``fdn.train`` (``configs/demo_train.py:pose,tiny``), then
``fdn.evaluate``'s per-joint table with the flip test and pictures, from the checkpoint the training wrote.

Slow (one compile of the train step and of the evaluation, as tests/test_train.py); it shares that file's
persistent XLA cache (``FDN_TEST_XLA_CACHE``). Whether the demo *learns* is measured by the full
``:pose`` run against a predict-the-mean baseline (``mean_joint_pck``; figures in the README).
"""

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import demo_train
from fdn.data import shapes
from fdn.serve import checkpoint
from fdn.train import loop as train_loop

XLA_CACHE = Path(os.environ.get("FDN_TEST_XLA_CACHE", "/tmp/fdn_test_xla_cache"))


def mean_joint_pck(train, val, threshold=0.5):
    """PCK of the predict-the-mean baseline: every image gets each joint's mean visible position over ``train``.
    ``train``, ``val``: lists of fdn_shapes examples (``shapes.render``) at the evaluation's scale."""
    kp = np.stack([e["keypoints"] for e in train])
    mean = np.array([kp[kp[:, j, 2] > 0, j, :2].mean(0) for j in range(kp.shape[1])])
    gt = np.stack([e["keypoints"] for e in val])
    norm = np.array([e["keypoint_norm"] for e in val])
    visible = gt[..., 2] > 0
    hits = (np.linalg.norm(gt[..., :2] - mean, axis=-1) <= threshold * norm[:, None]) & visible
    return float(hits.sum() / visible.sum())


def test_mean_baseline_on_hand_made_examples():
    def example(points, norm):
        return {"keypoints": np.array(points, np.float32), "keypoint_norm": np.float32(norm)}

    train = [example([[0, 0, 1], [9, 9, 0]], 4), example([[10, 0, 1], [20, 20, 1]], 4)]  # means (5, 0), (20, 20)
    val = [example([[6, 0, 1], [20, 23, 1]], 4), example([[9, 0, 1], [0, 0, 0]], 4)]  # hit, miss (3 > 2), miss
    assert mean_joint_pck(train, val) == pytest.approx(1 / 3)


@pytest.mark.slow
def test_pose_demo_trains_evaluates_and_predicts(tmp_path):
    from fdn.data import prepare
    from fdn.serve.evaluation import evaluate_checkpoint

    jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes, "SPLITS", {"train": 16, "val": 8})
        prepare.prepare("fdn_shapes", data_dir=tmp_path / "data")
    c = demo_train.get_config("pose,tiny")
    c.data.data_dir = str(tmp_path / "data")
    assert c.task == "pose" and c.optim.optimizer == "adam" and c.eval.flip_test
    train_loop.run(c, tmp_path / "run", log=lambda *a: None)
    best = tmp_path / "run" / "best_model"
    spec, _, info = checkpoint.load_model(best)
    assert spec.task == "pose" and spec.decoder.num_classes == shapes.NUM_KEYPOINTS
    meta = info["metadata"]
    assert meta["eval"]["flip_test"] and meta["eval"]["skeleton"] == [list(e) for e in shapes.KEYPOINT_SKELETON]
    assert 0.0 <= meta["metrics"]["pck"] <= 1.0
    scores, text = evaluate_checkpoint(best, png_dir=tmp_path / "png", num_png=2)
    assert "flip test" in text and "PCK@0.5" in text and "wrote 2 picture(s)" in text
    rows = [line.split()[0] for line in text.splitlines()[2 : 2 + shapes.NUM_KEYPOINTS]]
    assert rows == [str(j) for j in range(shapes.NUM_KEYPOINTS)]  # the per-joint table
    assert scores["score"] == scores["pck"]
    assert sorted(p.name for p in (tmp_path / "png").iterdir())[:3] == [
        "0000_gt.png",
        "0000_image.png",
        "0000_pred.png",
    ]
    json.dumps(scores)  # what --json writes

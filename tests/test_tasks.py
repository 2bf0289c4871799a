"""The task registry (`fdn.tasks`) and the shared conventions: each task's rules give what the formulas they
replaced gave, and serving reaches them without importing training or the search."""

import subprocess
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from fdn import conventions, losses, metrics, tasks
from fdn.data import catalog
from fdn.models.resize import resize_bilinear, resize_nearest


def test_registry_names_head_sizes_and_errors():
    assert tasks.NAMES == ("segmentation", "depth", "pose")
    assert tasks.get("segmentation").head_size(21) == 21 and tasks.get("depth").head_size(21) == 1
    assert tasks.get("pose").head_size(16) == 16  # K heatmaps
    assert tasks.get("segmentation").categorical and not tasks.get("depth").categorical
    assert all(tasks.get(n).label_key == n for n in ("segmentation", "depth"))
    assert tasks.get("pose").label_key == "keypoints"
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.get("classification")


def test_auto_is_a_guess_between_the_legacy_tasks_and_a_named_task_wins():
    assert tasks.resolve(tasks.AUTO, 1) == tasks.DEPTH and tasks.resolve(tasks.AUTO, 21) == tasks.SEGMENTATION
    # A named task is never second-guessed from the head: a 1-class segmentation head stays segmentation.
    assert tasks.resolve(tasks.SEGMENTATION, 1) == tasks.SEGMENTATION
    assert tasks.resolve(tasks.DEPTH, 21) == tasks.DEPTH
    assert tasks.resolve(tasks.POSE, 16) == tasks.POSE  # pose is never guessed, only named
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.resolve("classification", 16)


def test_the_commands_task_flags_offer_auto_and_every_registered_task():
    from fdn.bench import data, latency
    from fdn.data import augment

    assert latency.FLAGS["task"].parser.enum_values == [tasks.AUTO, *tasks.NAMES]
    assert data.FLAGS["task"].parser.enum_values == [*tasks.NAMES, augment.BOTH]
    assert augment.task_keys(augment.BOTH) == (tasks.SEGMENTATION, tasks.DEPTH)
    assert all(augment.task_keys(n) == tasks.get(n).data_keys for n in tasks.NAMES)


def _batch(rng, n=2, size=(16, 16), k=4):
    seg = rng.integers(0, k, (n, *size)).astype(np.uint8)
    seg[:, :2] = conventions.IGNORE_LABEL
    depth = rng.uniform(0.5, 5.0, (n, *size)).astype(np.float32)
    depth[:, -2:] = 0.0
    return {"segmentation": jnp.asarray(seg), "depth": jnp.asarray(depth), "valid": jnp.asarray([True, False])}


def test_segmentation_rules_match_the_losses_and_metrics():
    rng = np.random.default_rng(0)
    batch = _batch(rng)
    logits = jnp.asarray(rng.normal(size=(2, 8, 8, 4)).astype(np.float32))
    aux = [jnp.asarray(rng.normal(size=(2, 4, 4, 4)).astype(np.float32))]
    seg = tasks.get("segmentation")
    terms = seg.loss_terms(logits, aux, batch, 0.2)
    labels = resize_nearest(batch["segmentation"], (8, 8))
    assert float(terms["main"]) == float(losses.nll(logits, labels))
    assert float(terms["aux"]) == float(jnp.sum(losses.aux_nll(aux, labels)))
    assert "aux" not in seg.loss_terms(logits, [], batch, 0.2)
    sums = seg.eval_sums(logits, batch, 4)
    pred = jnp.argmax(resize_bilinear(logits, (16, 16)), -1)
    np.testing.assert_array_equal(sums["cm"], metrics.confusion_matrix(pred, batch["segmentation"], 4, batch["valid"]))
    scores = seg.summarise(sums, omit=(0,))
    assert scores["score"] == scores["miou"] and 0 <= scores["pixel_acc"] <= 1
    np.testing.assert_array_equal(seg.prediction(resize_bilinear(logits, (16, 16))), pred)


def test_depth_rules_match_the_losses_and_metrics():
    rng = np.random.default_rng(1)
    batch = _batch(rng)
    out = jnp.asarray(rng.uniform(0.5, 5.0, (2, 8, 8, 1)).astype(np.float32))
    depth = tasks.get("depth")
    terms = depth.loss_terms(out, [out[:, ::2, ::2]], batch, 0.2)
    target = resize_nearest(batch["depth"], (8, 8))
    assert float(terms["main"]) == float(losses.berhu(out, target, 0.2))
    assert float(terms["aux"]) == float(losses.berhu(losses.upsample_to(out[:, ::2, ::2], (8, 8)), target, 0.2))
    sums = depth.eval_sums(out, batch, 1)
    masked = jnp.where(batch["valid"][:, None, None], batch["depth"], 0.0)
    expected = metrics.depth_sums(resize_bilinear(out, (16, 16)), masked)
    for key in expected:
        np.testing.assert_array_equal(sums[key], expected[key])
    scores = depth.summarise(sums)
    assert scores["score"] == -scores["rmse"]
    assert depth.prediction(jnp.zeros((2, 16, 16, 1))).shape == (2, 16, 16)


def test_normalise_is_the_data_pipelines_and_serves():
    from fdn.data import augment
    from fdn.serve import images

    assert augment.normalise is conventions.normalise is images.normalise
    x = np.arange(256, dtype=np.uint8).repeat(3).reshape(256, 1, 3)
    np.testing.assert_array_equal(conventions.denormalise(conventions.normalise(x)), x)
    assert losses.IGNORE_LABEL == augment.IGNORE_LABEL == conventions.IGNORE_LABEL == 255


def test_data_dir_resolution(tmp_path):
    data = types.SimpleNamespace(data_dir="~/somewhere", auto_prepare=True, name="fdn_shapes", num_classes=5)
    assert catalog.resolve_data_dir(data, tmp_path).endswith("somewhere")
    data.data_dir = ""
    assert catalog.resolve_data_dir(data, tmp_path) == str(tmp_path / "data")
    data.auto_prepare = False
    assert catalog.resolve_data_dir(data, tmp_path) is None
    catalog.ensure_prepared(data, None, log=pytest.fail)  # auto_prepare off: never prepares, never logs
    assert catalog.num_classes_of(data) == 5
    assert catalog.class_names("voc_sbd", 21)[-1] == "tvmonitor" and catalog.class_names("voc_sbd", 3) is None


def test_serving_imports_neither_training_nor_the_search():
    code = (
        "import sys, fdn.serve.evaluation, fdn.serve.inference, fdn.serve.export, fdn.predict; "
        "print(sorted(m for m in sys.modules if m.startswith(('fdn.train', 'fdn.search', 'fdn.candidate'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("task", (tasks.SEGMENTATION, tasks.DEPTH))  # pose: tests/test_pose_task.py
def test_evaluation_pictures_follow_the_task(task, tmp_path):
    from PIL import Image

    from fdn.serve import evaluation

    rng = np.random.default_rng(2)
    batch = {k: np.asarray(v) for k, v in _batch(rng).items()}
    batch["image"] = conventions.normalise(rng.integers(0, 256, (2, 16, 16, 3), np.uint8))
    prediction = np.asarray(batch[task]) if task == "depth" else rng.integers(0, 4, (2, 16, 16))
    assert evaluation.write_pictures(tmp_path, 0, batch, prediction, task, limit=8) == 1  # image 1 is padding
    with Image.open(tmp_path / "0000_gt.png") as gt, Image.open(tmp_path / "0000_pred.png") as pred:
        assert gt.mode == pred.mode == ("P" if tasks.get(task).categorical else "RGB")
    with Image.open(tmp_path / "0000_image.png") as image:
        np.testing.assert_array_equal(np.asarray(image), conventions.denormalise(batch["image"][0]))

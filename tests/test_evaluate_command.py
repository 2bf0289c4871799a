"""``python -m fdn.evaluate`` and ``fdn.predict`` as commands: a saved model is scored; a missing or damaged
checkpoint is one line (the path, what to do), exit 2, no traceback, and nothing is deleted.

The model is a random tiny segmenter (agg 8) saved with fdn.train's metadata for the fdn_shapes test split, so
``fdn.evaluate`` finds the dataset, split and crop in the checkpoint as it does for a trained one.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fdn import genotype as G
from fdn.data import catalog
from fdn.models.decoder import DecoderSettings
from fdn.models.init import random_variables
from fdn.models.segmenter import ModelSpec
from fdn.serve import checkpoint
from tests.test_train import shapes_dir  # noqa: F401  (a module-scoped fixture)
from tests.test_train_interrupts import environment, error_line

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 7


def run(module, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        check=False,
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def files_of(directory: Path):
    return sorted((str(p), p.stat().st_size) for p in directory.rglob("*"))


def assert_one_line_error(done, command, *fragments):
    assert done.returncode == 2, done.stderr[-3000:]
    last = error_line(done.stderr, command)
    for fragment in fragments:
        assert fragment in last, (fragment, last)


@pytest.fixture(scope="module")
def model_dir(shapes_dir, tmp_path_factory):  # noqa: F811
    spec = ModelSpec(G.ARCH0, DecoderSettings(NUM_CLASSES, 8, 2, False), "segmentation", True)
    metadata = {
        "source": "fdn.train",
        "dataset": "fdn_shapes",
        "eval_split": "val",
        "data_dir": str(shapes_dir),
        "task": "segmentation",
        "class_names": catalog.class_names("fdn_shapes", NUM_CLASSES),
        "eval": {"crop_size": [32, 32], "min_side": 32, "batch_size": 4, "omit_classes": []},
    }
    directory = tmp_path_factory.mktemp("models") / "model"
    checkpoint.save_model(directory, random_variables(spec, 0), spec, metadata)
    return directory


@pytest.mark.slow
def test_evaluate_prints_the_class_table_and_metrics(model_dir, tmp_path):
    done = run("fdn.evaluate", f"--checkpoint={model_dir}", "--num_examples=4", f"--json={tmp_path / 'm.json'}")
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= scores["miou"] <= 1.0
    out = done.stdout
    assert f"{model_dir}: " in out and "fdn_shapes/val, 4 images, crop 32x32" in out
    for name in catalog.class_names("fdn_shapes", NUM_CLASSES):
        assert name in out  # the per-class table
    assert f"mIoU {scores['miou']:.4f}  pixel acc {scores['pixel_acc']:.4f}" in out


def test_evaluate_without_a_checkpoint_is_one_line(tmp_path):
    done = run("fdn.evaluate", f"--checkpoint={tmp_path / 'nope'}", timeout=120)
    assert_one_line_error(done, "fdn.evaluate", f"no checkpoint directory at {tmp_path / 'nope'}")


def truncate_variables(directory: Path) -> None:
    victim = max(
        (p for p in (directory / checkpoint.VARIABLES_DIR).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])


def garbage_variables_metadata(directory: Path) -> None:
    (directory / checkpoint.VARIABLES_DIR / "_METADATA").write_bytes(b"\x00garbage")  # the tree's structure


def garbage_spec(directory: Path) -> None:
    (directory / checkpoint.SPEC_FILE).write_text('{"model": {"genotype": ')


@pytest.mark.parametrize(
    "command,damage",
    [
        ("fdn.evaluate", truncate_variables),
        ("fdn.evaluate", garbage_variables_metadata),
        ("fdn.evaluate", garbage_spec),
        ("fdn.predict", truncate_variables),
    ],
)
def test_a_damaged_model_checkpoint_is_one_line_exit_2_and_kept(model_dir, tmp_path, damage, command):
    broken = tmp_path / "best_model"
    import shutil

    shutil.copytree(model_dir, broken)
    damage(broken)
    before = files_of(broken)
    if command == "fdn.evaluate":
        done = run(command, f"--checkpoint={broken}", "--num_examples=4", timeout=300)
    else:
        np.save(tmp_path / "x.npy", np.zeros((1, 32, 32, 3), np.float32))
        done = run(command, f"--checkpoint={broken}", f"--out={tmp_path / 'out.npz'}", tmp_path / "x.npy", timeout=300)
    assert_one_line_error(done, command, str(broken), "use another checkpoint")
    assert files_of(broken) == before

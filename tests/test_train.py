"""``fdn.train`` end to end on fdn_shapes (and a miniature NYU tree), ``WORKDIR#rank``, and user errors.

The end-to-end tests train the real segmenter (``configs/demo_train.py:tiny``: agg 8, 32-pixel crops, 8 steps).
Its compile takes one to two minutes on a 2-core CPU, so they are marked slow and share a persistent XLA cache
(``FDN_TEST_XLA_CACHE``): every later run of the same step program in the session loads it from there.
"""

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import demo_train, nyud_train
from fdn import genotype as G
from fdn import sharding
from fdn.search import run_log
from fdn.serve import checkpoint
from fdn.train import genotype_source
from fdn.train import loop as train_loop
from tests.data import trees

XLA_CACHE = Path(os.environ.get("FDN_TEST_XLA_CACHE", "/tmp/fdn_test_xla_cache"))
ARCH1 = [[2, [1, 0, 3, 6], [0, 1, 2, 8], [2, 0, 6, 1]], [[2, 3], [3, 1], [4, 4]]]


@pytest.fixture(scope="module")
def xla_cache():
    jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    """fdn_shapes with 16 train / 8 val images (the real builder, fewer images)."""
    from fdn.data import prepare, shapes

    root = tmp_path_factory.mktemp("shapes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes, "SPLITS", {"train": 16, "val": 8})
        prepare.prepare("fdn_shapes", data_dir=root)
    return root


def tiny(data_dir, depth=False):
    c = demo_train.get_config("tiny,depth" if depth else "tiny")
    c.data.data_dir = str(data_dir)
    return c


def run(config, workdir):
    return train_loop.run(config, workdir, log=lambda *a: None)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def restore_latest(workdir):
    mngr = checkpoint.TrainCheckpoints(Path(workdir) / train_loop.CHECKPOINTS)
    step = mngr.latest_step()
    state, extra = mngr.restore(step)
    mngr.close()
    return step, state, extra


class Interrupt(Exception):
    pass


def interrupt_after(monkeypatch, n, poison=False):
    """Training batches after the n-th raise (a kill), or get a NaN pixel (``poison``)."""
    real = sharding.shard_batch
    calls = [0]

    def shard(batch, mesh):
        if "valid" in batch:  # an evaluation batch
            return real(batch, mesh)
        calls[0] += 1
        if calls[0] > n:
            if not poison:
                raise Interrupt
            batch = dict(
                batch,
                image=np.where(
                    np.arange(batch["image"].size).reshape(batch["image"].shape) == 5, np.nan, batch["image"]
                ).astype(np.float32),
            )
        return real(batch, mesh)

    monkeypatch.setattr(train_loop.sharding, "shard_batch", shard)


# -------------------------------------------------------------------------------------------- fast tests
def test_workdir_rank_resolves_the_leaderboard(tmp_path):
    log = run_log.RunLog(tmp_path)
    for i, (g, r) in enumerate([("arch0", 0.2), (ARCH1, 0.5), ("arch2", 0.4), (ARCH1, 0.1)]):
        genotype = G.parse(g)
        log.append({"index": i, "genotype": genotype.to_list(), "hash": genotype.short_hash, "reward": r})
    log.close()
    assert genotype_source.resolve(f"{tmp_path}#1") == G.ARCH1
    assert genotype_source.resolve(f"{tmp_path}#2") == G.ARCH2
    assert genotype_source.resolve(f"{tmp_path}#3") == G.ARCH0
    from fdn.search.leaderboard import unique_genotypes  # the leaderboard ranks by the same rule

    board = [G.parse(row["genotype"]) for row in unique_genotypes(run_log.read(tmp_path))]
    assert board == [genotype_source.resolve(f"{tmp_path}#{k}") for k in (1, 2, 3)]
    assert genotype_source.resolve("arch2") == G.ARCH2
    assert genotype_source.resolve(json.dumps(ARCH1)) == G.ARCH1
    with pytest.raises(G.GenotypeError, match="3 distinct genotype"):
        genotype_source.resolve(f"{tmp_path}#4")
    with pytest.raises(G.GenotypeError, match="no search"):
        genotype_source.resolve(f"{tmp_path / 'nope'}#1")
    with pytest.raises(G.GenotypeError, match="integer rank"):
        genotype_source.resolve(f"{tmp_path}#best")


def test_bad_genotype_and_missing_dataset_are_one_line_errors(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    base = [
        sys.executable,
        "-m",
        "fdn.train",
        "--config=configs/demo_train.py:tiny",
        "--noconfig.data.auto_prepare",
        f"--config.data.data_dir={tmp_path / 'empty'}",
    ]
    bad = subprocess.run(
        base + ["--config.genotype=arch9", f"--workdir={tmp_path / 'a'}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "fdn.train: error: unknown genotype 'arch9'"
    ), bad.stderr
    missing = subprocess.run(
        base + [f"--workdir={tmp_path / 'b'}"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "fdn_shapes is not prepared" in missing.stderr and "python -m fdn.data.prepare" in missing.stderr
    assert "Traceback" not in missing.stderr


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_train_resume_export_evaluate(xla_cache, shapes_dir, tmp_path, monkeypatch):
    config = tiny(shapes_dir)
    result = run(config, tmp_path / "full")  # 8 steps, eval at 4 and 8, checkpoints at 3, 4, 6, 8
    full = tmp_path / "full"
    assert result["steps"] == 8 and 0.0 <= result["metrics"]["miou"] <= 1.0
    for name in ("best_model", "final_model"):
        spec, variables, info = checkpoint.load_model(full / name)
        assert spec.decoder.aux_cell is False and spec.decoder.agg_size == 8 and spec.genotype == G.ARCH0
        assert info["metadata"]["dataset"] == "fdn_shapes" and info["metadata"]["task"] == "segmentation"
    assert info["metadata"]["step"] == 8
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "eval"] == [4, 8]
    assert all(np.isfinite(x["loss"]) for x in lines if x["kind"] == "train")
    assert list((full / "tensorboard").glob("events.out.tfevents.*"))

    # killed after step 5, resumed: continues from the checkpoint of step 4 to the same weights
    with monkeypatch.context() as mp:
        interrupt_after(mp, 5)
        with pytest.raises(Interrupt):
            run(config, tmp_path / "resumed")
    assert restore_latest(tmp_path / "resumed")[0] == 4
    again = run(config, tmp_path / "resumed")
    assert again["start_step"] == 4 and again["steps"] == 8
    step_a, state_a, _ = restore_latest(full)
    step_b, state_b, _ = restore_latest(tmp_path / "resumed")
    assert step_a == step_b == 8
    for a, b in zip(leaves(state_a), leaves(state_b)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # the exported model scores the same with fdn.evaluate as during training, and draws pictures
    from fdn.serve.evaluation import evaluate_checkpoint

    scores, text = evaluate_checkpoint(str(full / "final_model"), png_dir=str(tmp_path / "png"), num_png=3)
    assert scores["miou"] == pytest.approx(result["metrics"]["miou"], abs=1e-6)
    assert "striped_disc" in text and "mIoU" in text
    assert len(list((tmp_path / "png").glob("*_pred.png"))) == 3


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(xla_cache, shapes_dir, tmp_path, monkeypatch):
    interrupt_after(monkeypatch, 5, poison=True)  # step 6 sees a NaN pixel
    with pytest.raises(train_loop.NonFiniteLossError, match="at step 6 .*last good checkpoint is step 4"):
        run(tiny(shapes_dir), tmp_path)
    step, state, _ = restore_latest(tmp_path)
    assert step == 4 and int(state["bad_step"]) == 0
    assert all(np.isfinite(x).all() for x in leaves(state) if x.dtype.kind == "f")
    assert not (tmp_path / "final_model").exists()


@pytest.mark.slow
def test_depth_on_shapes_and_on_a_miniature_nyu_tree(xla_cache, shapes_dir, tmp_path):
    from fdn.data import prepare
    from fdn.serve.evaluation import evaluate_checkpoint

    result = run(tiny(shapes_dir, depth=True), tmp_path / "shapes")
    m = result["metrics"]
    assert m["rmse"] > 0 and 0 <= m["delta1"] <= m["delta2"] <= m["delta3"] <= 1 and np.isfinite(m["log_rmse"])

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 48, 3)).astype(np.uint8) for _ in range(10)]
    trees.write_nyu(tmp_path / "manual", rng, frames)
    prepare.prepare("nyu_depth_v2_labeled", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual")
    c = nyud_train.get_config("tiny")
    c.data.data_dir = str(tmp_path / "tfds")
    for key in ("batch_size", "crop_size", "min_side", "scale_range"):  # the shapes run's step program
        c.data[key] = tiny(shapes_dir, depth=True).data[key]
    c.optim = tiny(shapes_dir, depth=True).optim
    c.eval.batch_size = 4
    result = run(c, tmp_path / "nyu")  # 5 train images, the same 8 steps of batch 4
    assert result["steps"] == 8 and result["metrics"]["rmse"] > 0
    spec, _, info = checkpoint.load_model(tmp_path / "nyu" / "final_model")
    assert spec.task == "depth" and spec.decoder.num_classes == 1
    scores, text = evaluate_checkpoint(str(tmp_path / "nyu" / "final_model"), png_dir=str(tmp_path / "png"), num_png=2)
    assert scores["rmse"] == pytest.approx(result["metrics"]["rmse"], rel=1e-5) and "abs_rel" in text

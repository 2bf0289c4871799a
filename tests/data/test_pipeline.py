"""grain pipelines: fixed shapes, determinism, resume, per-host sharding, eval padding, split, stage 1."""

import json

import numpy as np
import pytest

from fdn.data import pipeline, shapes, split


def _indexed_source(n, h=12, w=16):
    """Records whose every pixel carries the record index (to see which records a batch holds)."""
    return [
        {
            "image": np.full((h, w, 3), i, np.uint8),
            "segmentation": np.full((h, w), i, np.uint8),
            "depth": np.full((h, w), i + 1, np.float32),
            "image_id": str(i),
        }
        for i in range(n)
    ]


def _ids(batch):
    return batch["segmentation"][:, 0, 0].tolist()


def _train(source, **kw):
    args = dict(
        crop_size=12,
        min_side=12,
        scale_range=(1.0, 1.0),
        batch_size=4,
        seed=0,
        task="both",
        process_index=0,
        process_count=1,
    )
    args.update(kw)
    return pipeline.train_dataset(source, **args)


@pytest.fixture(scope="module")
def shapes_source(tmp_path_factory):
    from fdn.data import prepare

    data_dir = tmp_path_factory.mktemp("tfds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shapes, "SPLITS", {"train": 24, "val": 5})
        prepare.prepare("fdn_shapes", data_dir=data_dir)
    return pipeline.data_source("fdn_shapes", "train", data_dir)


def test_batches_have_fixed_shapes_and_types(shapes_source):
    it = iter(
        pipeline.train_dataset(
            shapes_source,
            crop_size=(96, 112),
            min_side=96,
            batch_size=5,
            seed=1,
            task="both",
            process_index=0,
            process_count=1,
        )
    )
    for _ in range(6):  # crosses the epoch boundary (24 records, drop remainder)
        batch = next(it)
        assert set(batch) == {"image", "segmentation", "depth"}
        assert batch["image"].shape == (5, 96, 112, 3) and batch["image"].dtype == np.float32
        assert batch["segmentation"].shape == (5, 96, 112) and batch["segmentation"].dtype == np.uint8
        assert batch["depth"].shape == (5, 96, 112) and batch["depth"].dtype == np.float32
        assert -2.2 < batch["image"].min() and batch["image"].max() < 2.7
        assert batch["segmentation"].max() < shapes.NUM_CLASSES
    seg_only = next(
        iter(
            pipeline.train_dataset(shapes_source, crop_size=64, batch_size=2, seed=1, process_index=0, process_count=1)
        )
    )
    assert set(seg_only) == {"image", "segmentation"}


def test_epochs_cover_every_record_and_reshuffle():
    it = iter(_train(_indexed_source(12), batch_size=4))
    epochs = [sum((_ids(next(it)) for _ in range(3)), []) for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(12))
    assert epochs[0] != epochs[1]


def test_same_seed_same_batches_other_seed_other_batches(shapes_source):
    def first(seed, n=3):
        it = iter(
            pipeline.train_dataset(
                shapes_source, crop_size=64, batch_size=4, seed=seed, task="both", process_index=0, process_count=1
            )
        )
        return [next(it) for _ in range(n)]

    a, b, c = first(3), first(3), first(4)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_resume_from_saved_state(tmp_path, shapes_source):
    ds = pipeline.train_dataset(
        shapes_source, crop_size=64, batch_size=4, seed=5, task="both", process_index=0, process_count=1
    )
    it = iter(ds)
    for _ in range(7):
        next(it)
    pipeline.save_iterator_state(it, tmp_path / "data_state.json")
    expected = [next(it) for _ in range(3)]
    json.loads((tmp_path / "data_state.json").read_text())  # plain JSON
    resumed = pipeline.restore_iterator_state(iter(ds), tmp_path / "data_state.json")
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_orbax_checkpoint_of_the_iterator(tmp_path):
    import grain
    import orbax.checkpoint as ocp

    ds = _train(_indexed_source(10), batch_size=2, seed=9)
    it = iter(ds)
    next(it), next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        want = [_ids(next(it)) for _ in range(3)]
        fresh = iter(ds)
        mngr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    assert [_ids(next(fresh)) for _ in range(3)] == want


def test_hosts_get_disjoint_slices_of_one_shuffle():
    source = _indexed_source(16)
    seen = []
    for host in range(2):
        it = iter(_train(source, batch_size=8, seed=2, process_index=host, process_count=2))
        ids = sum((_ids(next(it)) for _ in range(2)), [])
        assert len(ids) == 8
        seen.append(ids)
    assert sorted(seen[0] + seen[1]) == list(range(16))
    with pytest.raises(ValueError, match="divisible"):
        _train(source, batch_size=5, process_index=0, process_count=2)


def test_worker_processes_give_the_same_batches(shapes_source):
    kw = dict(crop_size=48, batch_size=3, seed=11, task="both", process_index=0, process_count=1)
    it0 = iter(pipeline.train_dataset(shapes_source, worker_count=0, **kw))
    want = [next(it0) for _ in range(4)]
    it1 = iter(pipeline.train_dataset(shapes_source, worker_count=1, **kw))
    try:
        got = [next(it1) for _ in range(4)]
        json.dumps(it1.get_state())  # checkpointable with workers too
    finally:
        it1.close()
    for g, w in zip(got, want):
        for key in w:
            np.testing.assert_array_equal(g[key], w[key])


@pytest.mark.parametrize("num_records,batch_size,hosts", [(10, 4, 2), (8, 4, 1), (7, 3, 1), (5, 8, 2)])
def test_eval_scores_every_record_once(num_records, batch_size, hosts):
    source = _indexed_source(num_records)
    seen, batches = [], set()
    for host in range(hosts):
        count = 0
        for batch in pipeline.eval_dataset(
            source, crop_size=(12, 16), batch_size=batch_size, task="both", process_index=host, process_count=hosts
        ):
            count += 1
            assert batch["image"].shape == (batch_size // hosts, 12, 16, 3)
            assert batch["valid"].dtype == bool
            seen += np.asarray(_ids(batch))[batch["valid"]].tolist()
            assert (batch["segmentation"][~batch["valid"]] == 255).all()
            assert (batch["depth"][~batch["valid"]] == 0).all()
        batches.add(count)
        assert count == pipeline.eval_num_batches(num_records, batch_size, hosts)
    assert len(batches) == 1  # the same number of batches on every host
    assert sorted(seen) == list(range(num_records))


def test_meta_split():
    train, val = split.meta_split(10582, seed=0)
    assert (len(train), len(val)) == (9523, 1059)
    assert np.intersect1d(train, val).size == 0 and np.union1d(train, val).size == 10582
    again, _ = split.meta_split(10582, seed=0)
    other, _ = split.meta_split(10582, seed=1)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


def test_stage1_subset_is_the_start_of_the_training_stream(shapes_source):
    train_idx, val_idx = split.meta_split(len(shapes_source), seed=0)
    kw = dict(crop_size=40, seed=4, min_side=40, task="both")
    subset = split.stage1_subset(shapes_source, train_idx, 30, batch_size=8, **kw)  # > len: wraps into epoch 2
    assert subset["image"].shape == (30, 40, 40, 3) and subset["segmentation"].shape == (30, 40, 40)
    assert subset["depth"].dtype == np.float32
    again = split.stage1_subset(shapes_source, train_idx, 30, batch_size=16, **kw)
    for key in subset:
        np.testing.assert_array_equal(subset[key], again[key])
    stream = next(
        iter(
            pipeline.train_dataset(
                shapes_source, indices=train_idx, batch_size=30, process_index=0, process_count=1, **kw
            )
        )
    )
    np.testing.assert_array_equal(stream["image"], subset["image"])
    # Only meta-train records: no crop equals an augmented meta-val record's.
    assert len(train_idx) == 21 and len(val_idx) == 3

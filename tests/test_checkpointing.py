"""fdn.checkpointing (every Orbax call) and fdn.errors (which errors are the user's): round trips, retention,
and damaged checkpoints -> one-line `CheckpointError` naming the directory and what to do."""

import ast
import inspect

import jax
import numpy as np
import pytest

from fdn import checkpointing, errors
from fdn.checkpointing import CheckpointError, StepManager


def tree(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": rng.normal(size=(3, 4)).astype(np.float32),
        "b": {"x": np.arange(5, dtype=np.int32)},
        "key": np.array([seed, 7], np.uint32),
    }


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def damage(directory, how):
    """Zero-fill (``corrupt``) or cut in half (``truncate``) every data file of an Orbax checkpoint."""
    hit = 0
    for f in directory.rglob("*"):
        if f.is_file() and f.stat().st_size > 100 and "METADATA" not in f.name and not f.name.startswith("_"):
            data = f.read_bytes()
            f.write_bytes(b"\0" * 16 if how == "corrupt" else data[: len(data) // 2])
            hit += 1
    assert hit


def assert_clear(err: CheckpointError, directory, hint_word):
    message = str(err)
    assert "\n" not in message and str(directory) in message and hint_word in message
    assert len(message) < 1000


def test_tree_round_trip_and_abstract_targets(tmp_path):
    saved = tree(1)
    checkpointing.save_tree(tmp_path / "t", saved)
    assert_same(checkpointing.restore_tree(tmp_path / "t", tree(2)), saved)  # concrete target: values unused
    abstract = checkpointing.abstract_like(tree(3))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
    assert checkpointing.abstract_like(abstract) == abstract
    assert_same(checkpointing.restore_tree(tmp_path / "t", abstract), saved)
    checkpointing.save_tree(tmp_path / "t", tree(4))  # replaces
    assert_same(checkpointing.restore_tree(tmp_path / "t", abstract), tree(4))


@pytest.mark.parametrize("how", ["corrupt", "truncate"])
def test_damaged_tree_is_a_checkpoint_error(tmp_path, how):
    checkpointing.save_tree(tmp_path / "t", tree())
    damage(tmp_path / "t", how)
    with pytest.raises(CheckpointError, match="cannot restore") as info:
        checkpointing.restore_tree(tmp_path / "t", tree(), hint="write it again")
    assert_clear(info.value, tmp_path / "t", "write it again")
    assert isinstance(info.value, errors.UserError) and isinstance(info.value, RuntimeError)


def test_missing_or_mismatching_tree_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="^cannot restore the thing: FileNotFoundError") as info:
        checkpointing.restore_tree(tmp_path / "nowhere", tree(), what="cannot restore the thing", hint="look")
    assert_clear(info.value, tmp_path / "nowhere", "look")
    checkpointing.save_tree(tmp_path / "t", tree())
    other = dict(tree(), extra=np.zeros((5, 4), np.float32))
    with pytest.raises(CheckpointError, match=f"cannot restore {tmp_path / 't'}: ValueError") as info:
        checkpointing.restore_tree(tmp_path / "t", other)
    assert_clear(info.value, tmp_path / "t", "write it again")


def test_steps_round_trip_and_keep_the_latest(tmp_path):
    steps = StepManager(tmp_path / "ck", keep_latest=2)
    for step in (1, 2, 3):
        steps.save(step, arrays={"arrays": tree(step)}, json={"meta": {"step": step, "name": "x"}})
    assert steps.latest_step() == 3
    assert sorted(int(p.name) for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == [2, 3]
    steps.close()
    steps = StepManager(tmp_path / "ck", keep_latest=2)  # a new session reads what the last one wrote
    restored = steps.restore(2, arrays={"arrays": tree()}, json=("meta",))
    assert_same(restored["arrays"], tree(2))
    assert restored["meta"] == {"step": 2, "name": "x"}
    as_saved = steps.restore(3, arrays={"arrays": None})["arrays"]
    assert_same(jax.tree.map(np.asarray, as_saved), tree(3))
    steps.close()


def test_steps_keep_the_best_scored_one(tmp_path):
    steps = StepManager(tmp_path / "ck", keep_latest=1, keep_best=True, asynchronous=True)
    for step, score in ((1, 0.5), (2, 0.9), (3, 0.1), (4, None)):
        steps.save(step, arrays={"s": tree(step)}, score=score)
    steps.wait()
    assert steps.latest_step() == 4
    assert sorted(int(p.name) for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == [2, 4]
    assert_same(steps.restore(2, arrays={"s": tree()})["s"], tree(2))
    steps.close()


def test_steps_without_a_score_are_not_kept_as_best(tmp_path):
    """An unscored step is dropped once it is no longer the latest: only the latest and the best-scored stay."""
    steps = StepManager(tmp_path / "ck", keep_latest=1, keep_best=True)
    for step, score in ((1, 0.5), (2, None), (3, 0.1)):
        steps.save(step, arrays={"s": tree(step)}, score=score)
    assert sorted(int(p.name) for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == [1, 3]
    steps.close()


@pytest.mark.parametrize("how", ["corrupt", "truncate"])
def test_damaged_step_is_a_checkpoint_error(tmp_path, how):
    steps = StepManager(tmp_path / "ck")
    steps.save(5, arrays={"arrays": tree()}, json={"meta": {"a": 1}})
    damage(tmp_path / "ck" / "5" / "arrays", how)
    with pytest.raises(CheckpointError, match="cannot restore step 5 of") as info:
        steps.restore(5, arrays={"arrays": tree()}, json=("meta",), hint="use a new --workdir")
    assert_clear(info.value, tmp_path / "ck", "use a new --workdir")
    (tmp_path / "ck" / "5" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot restore step 5 of"):
        steps.restore(5, json=("meta",))
    steps.close()


def test_user_errors_share_one_base_and_keep_their_builtin_ones():
    from fdn.convert.files import StateDictError
    from fdn.convert.segmenter import ConversionError
    from fdn.data.base import ManualDataError
    from fdn.genotype import GenotypeError
    from fdn.serve.checkpoint import CheckpointError as ServeCheckpointError
    from fdn.serve.export import ExportError

    assert ServeCheckpointError is CheckpointError
    for cls, builtin in (
        (GenotypeError, ValueError),
        (CheckpointError, RuntimeError),
        (StateDictError, ValueError),
        (ConversionError, ValueError),
        (ExportError, RuntimeError),
        (errors.InputError, ValueError),
        (ManualDataError, FileNotFoundError),
    ):
        assert issubclass(cls, errors.UserError) and issubclass(cls, builtin), cls


def test_errors_imports_nothing_from_fdn():
    imported = [
        node
        for node in ast.walk(ast.parse(inspect.getsource(errors)))
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    names = [a.name for n in imported if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in imported if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n == "fdn" or n.startswith("fdn.")], names


@pytest.mark.parametrize(
    "exc", [CheckpointError("bad checkpoint in /x; do y"), FileNotFoundError("no /y"), errors.InputError("bad image")]
)
def test_report_user_errors_exits_2_with_one_line(exc, capsys):
    @errors.report_user_errors("fdn.thing")
    def main():
        raise exc

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert capsys.readouterr().err == f"fdn.thing: error: {exc}\n"


def test_report_user_errors_lets_programming_errors_raise():
    @errors.report_user_errors("fdn.thing")
    def main():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main()


def test_late_event_loop_errors_of_other_threads_are_dropped_from_the_start_of_a_restore(monkeypatch):
    """Tensorstore reads of a failed restore finish on their own threads into Orbax's closed loop; the filter
    must be in place before the failure reaches fdn (they print in between), and drop nothing else."""
    import threading

    seen = []
    monkeypatch.setattr("sys.excepthook", lambda kind, value, tb: seen.append((threading.current_thread().name, value)))
    closed, other = RuntimeError("Event loop is closed"), RuntimeError("something else")

    def report_from_a_thread(exc):
        thread = threading.Thread(target=lambda: __import__("sys").excepthook(type(exc), exc, None), name="reader")
        thread.start()
        thread.join()

    with pytest.raises(CheckpointError, match="cannot restore x: ValueError: broken; do y"):
        with checkpointing.failures_as_checkpoint_error("cannot restore x", "do y"):
            report_from_a_thread(closed)  # before the failure: already filtered
            report_from_a_thread(other)
            raise ValueError("broken")
    report_from_a_thread(closed)
    import sys

    sys.excepthook(type(closed), closed, None)  # the main thread's own error is never hidden
    assert seen == [("reader", other), ("MainThread", closed)]


def test_unraisable_errors_of_orbax_coroutines_are_dropped_and_no_others(monkeypatch, tmp_path):
    """A failed restore leaves Orbax's read coroutines unfinished; collected later, each printed "Exception ignored
    in: <coroutine ...>" with a traceback after the one-line error. Those go; an error of any other coroutine stays."""
    import os
    import sys
    import types

    seen = []
    monkeypatch.setattr("sys.unraisablehook", lambda info: seen.append(info.object))
    monkeypatch.setattr("sys.excepthook", sys.__excepthook__)  # plain hooks: the restore installs its filter afresh
    namespace = {}
    for name, folder in (("orbax_read", "orbax"), ("user_read", "mine")):
        filename = os.path.join(str(tmp_path), folder, "serialization.py")
        exec(compile(f"async def {name}():\n    raise Exception('reading')\n", filename, "exec"), namespace)
    orbax_coro, user_coro = namespace["orbax_read"](), namespace["user_read"]()

    def report(obj):
        info = types.SimpleNamespace(exc_type=Exception, exc_value=Exception("reading"), exc_traceback=None, object=obj)
        sys.unraisablehook(info)

    with pytest.raises(CheckpointError):
        with checkpointing.failures_as_checkpoint_error("cannot restore x", "do y"):
            raise ValueError("broken")
    report(orbax_coro)
    report(user_coro)
    report(None)
    assert seen == [user_coro, None]
    orbax_coro.close()
    user_coro.close()


def test_unretrieved_tensorstore_read_errors_logged_by_asyncio_are_dropped_and_no_others():
    """When one read of a damaged checkpoint fails, its siblings' tensorstore errors are never awaited; collected
    later, asyncio logged each ("Task exception was never retrieved", traceback) after the one-line error. Those
    go once a restore has started; asyncio's other records, and other never-retrieved errors, stay."""
    import logging

    kept = []

    class Keep(logging.Handler):
        def emit(self, record):
            kept.append(record.exc_info[1] if record.exc_info else record.getMessage())

    logger = logging.getLogger("asyncio")
    handler = Keep()
    logger.addHandler(handler)
    read = ValueError('OUT_OF_RANGE: Error reading "params.k/0.0" in OCDBT database at local file "/x/": range')
    mine = ValueError("my own task failed")

    def log_unretrieved(exc):
        exc_info = (type(exc), exc, None)
        logger.error("Task exception was never retrieved\nfuture: <Task finished name='Task-1'>", exc_info=exc_info)

    try:
        with pytest.raises(CheckpointError):
            with checkpointing.failures_as_checkpoint_error("cannot restore x", "do y"):
                raise ValueError("broken")
        log_unretrieved(read)
        log_unretrieved(mine)
        logger.error("Unclosed event loop")
        assert kept == [mine, "Unclosed event loop"]
    finally:
        logger.removeHandler(handler)

"""Bad input the command audit left open: refused before any work or any write, in one line that says what to do.

fdn.predict kept no existing ``--out`` safe (fdn.export does) and let NumPy extend a name without ``.npz``;
fdn.export kept a made-up ``--platforms`` name in its sidecar and exited 0; fdn.search wrote ``checkpoints/`` and
``config.json`` into a fresh workdir before refusing settings it cannot run with; some messages named the
problem but not the remedy.
"""

import json

import pytest

from fdn import predict
from fdn.bench import __main__ as bench_main
from fdn.bench import forward as bench_forward
from fdn.errors import InputError, UserError
from fdn.serve import export
from fdn.train import genotype_source
from tests.test_bad_input_audit import one_line, run


def test_predict_keeps_an_existing_out_and_checks_names_before_any_work(tmp_path):
    out = tmp_path / "pred.npz"
    out.write_bytes(b"yesterday's predictions")
    # the checkpoint does not exist: the output checks come first, so nothing is loaded or computed
    with pytest.raises(FileExistsError, match="pred.npz exists; pass --overwrite to replace it"):
        predict.run(tmp_path / "no_checkpoint", out, ["x.png"])
    assert out.read_bytes() == b"yesterday's predictions"
    assert predict.check_outputs(out, overwrite=True) == out
    with pytest.raises(InputError, match=r"must name a \.npz file, e.g. --out=.*preds\.npz"):
        predict.check_outputs(tmp_path / "preds")
    (tmp_path / "vis").write_text("a file")
    with pytest.raises(InputError, match="--png=.*vis is a file; give a directory"):
        predict.check_outputs(tmp_path / "new.npz", png=tmp_path / "vis")


def test_export_refuses_unknown_platforms_before_loading(tmp_path):
    with pytest.raises(export.ExportError, match=r"--platforms \['cpu', 'tpu9'\]: give one or more of cpu, cuda"):
        export.export_checkpoint(
            tmp_path / "no_checkpoint", "stablehlo", tmp_path / "m.stablehlo", platforms=["cpu", "tpu9"]
        )
    with pytest.raises(export.ExportError, match="give one or more of"):
        export.export_checkpoint(tmp_path / "no_checkpoint", "stablehlo", tmp_path / "m.stablehlo", platforms=[])


def test_bench_flag_errors_point_to_the_bench_help(capsys):
    try:
        assert bench_main.main(["fdn.bench", "forward", "--nosuch=1"]) == 2
    finally:
        bench_forward.FLAGS.unparse_flags()
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "nosuch" in err[0] and err[0].endswith("(python -m fdn.bench forward --help lists its flags)")
    )


def test_train_from_a_search_says_what_to_give(tmp_path):
    with pytest.raises(UserError, match=r"holds no search .*; give WORKDIR#rank with the --workdir of"):
        genotype_source.from_search(tmp_path, 1)
    record = {
        "hash": "h",
        "index": 0,
        "reward": 0.1,
        "genotype": [[0, [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [[0, 0]] * 3],
    }
    (tmp_path / "candidates.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(UserError, match=r"rank 5 does not exist \(give a rank from 1 to 1; python -m fdn.leaderboard"):
        genotype_source.from_search(tmp_path, 5)


def test_search_refuses_settings_before_writing_to_a_fresh_workdir(tmp_path):
    workdir = tmp_path / "new"
    done = run("fdn.search", "--config=configs/demo.py:tiny", f"--workdir={workdir}", "--config.num_candidates=-5")
    assert "num_candidates=-5: a search scores at least 1 candidate" in one_line(done, "fdn.search")
    assert not workdir.exists()


@pytest.mark.parametrize(
    "what,arg",
    [
        ("stage1", "--batch=0"),
        ("stage1", "--crop=16"),
        ("stage2", "--steps=0"),
        ("depthwise", "--channels=0"),
        ("controller", "--repeats=0"),
        ("data", "--batch_size=0"),
        ("host_memory", "--rounds=0"),
        ("forward", "--size=0"),
        ("latency_model", "--num_classes=-1"),
    ],
)
def test_bench_counts_out_of_range_are_one_line_before_any_work(what, arg, capsys):
    """A zero batch or crop below the encoder's stride failed inside the bench (a traceback from NumPy or XLA)."""
    import importlib

    module = importlib.import_module(f"fdn.bench.{what}")
    try:
        assert bench_main.main(["fdn.bench", what, arg]) == 2
    finally:
        module.FLAGS.unparse_flags()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and arg in err[0] and "--help lists its flags" in err[0]

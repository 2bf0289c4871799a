"""Bad input found by an audit of every command: each is one line on stderr naming the problem and what to do,
exit code 2, no traceback, nothing computed lost (`fdn.errors`, `fdn.cli`).

Commands run as subprocesses where absl's own handling is what is checked (usage errors, flag bounds), in-process
where the fix is in a library function the commands share.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train import shapes_dir  # noqa: F401  (a module-scoped fixture)
from tests.test_train_interrupts import error_line

ROOT = Path(__file__).resolve().parents[1]


def run(module, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(done: subprocess.CompletedProcess, command: str) -> str:
    """The error line of a command that failed on bad input (exit code 2, no traceback, one line)."""
    assert done.returncode == 2, done.stderr[-3000:]
    return error_line(done.stderr, command)


# ------------------------------------------------------------------------------------ positional arguments
@pytest.mark.parametrize(
    "module,args,fragment",
    [
        ("fdn.leaderboard", [], "usage: python -m fdn.leaderboard WORKDIR"),
        ("fdn.data.prepare", [], "usage: python -m fdn.data.prepare NAME"),
        ("fdn.evaluate", ["--checkpoint=/nonexistent", "extra"], "unexpected arguments ['extra']"),
        ("fdn.export", ["--checkpoint=/nonexistent", "--out=/nonexistent.x", "extra"], "unexpected arguments"),
    ],
)
def test_wrong_positional_arguments_are_one_line_exit_2(module, args, fragment):
    """absl answers a ``UsageError`` with the whole help text and exit code 1; fdn.export ignored extras."""
    line = one_line(run(module, *args), module)
    assert fragment in line


# ------------------------------------------------------------------------------------ checkpoints
def test_a_checkpoint_whose_arrays_do_not_fit_its_description_is_a_checkpoint_error(tmp_path):
    """Orbax restores the saved shapes whatever the target says: a model json edited or copied from another model
    (here: 21 classes over a 7-class model's arrays) failed inside Flax with a traceback in fdn.predict,
    fdn.evaluate and fdn.export, and fdn.convert exported the wrong arrays without a word."""
    import json

    import jax
    import numpy as np

    from fdn import checkpointing
    from fdn import genotype as G
    from fdn.models.decoder import DecoderSettings
    from fdn.models.init import random_variables
    from fdn.models.segmenter import ModelSpec
    from fdn.serve import checkpoint

    spec = ModelSpec(G.ARCH0, DecoderSettings(7, 8, 1, False))
    model = checkpoint.save_model(tmp_path / "model", random_variables(spec, 0), spec)
    info = json.loads((model / checkpoint.SPEC_FILE).read_text())
    info["model"]["decoder"]["num_classes"] = 21
    (model / checkpoint.SPEC_FILE).write_text(json.dumps(info))
    before = sorted((str(p), p.stat().st_size) for p in model.rglob("*"))
    with pytest.raises(checkpoint.CheckpointError, match=r"has shape \(7,\) in the checkpoint, expected \(21,\)"):
        checkpoint.load_model(model)
    assert sorted((str(p), p.stat().st_size) for p in model.rglob("*")) == before

    saved = checkpointing.save_tree(tmp_path / "tree", {"a": np.zeros((3, 7), np.float32)})
    with pytest.raises(checkpointing.CheckpointError, match="use another"):
        checkpointing.restore_tree(saved, {"a": jax.ShapeDtypeStruct((3, 21), np.float32)}, hint="use another")
    steps = checkpointing.StepManager(tmp_path / "steps")
    steps.save(1, arrays={"state": {"w": np.zeros(4, np.float32)}})
    with pytest.raises(checkpointing.CheckpointError, match=r"\['w'\] has shape \(4,\)"):
        steps.restore(1, arrays={"state": {"w": np.zeros(5, np.float32)}})
    assert steps.restore(1, arrays={"state": {"w": np.ones(4, np.float32)}})["state"]["w"].shape == (4,)


# ------------------------------------------------------------------------------------ out-of-range values
@pytest.mark.parametrize(
    "module,args,flag",
    [
        (
            "fdn.predict",
            ["--checkpoint=/nonexistent", "--out=/nonexistent.npz", "--batch_size=0", "x.npy"],
            "batch_size",
        ),
        ("fdn.evaluate", ["--checkpoint=/nonexistent", "--num_examples=-3"], "num_examples"),
        ("fdn.export", ["--checkpoint=/nonexistent", "--out=/nonexistent.x", "--batch=-1"], "batch"),
        ("fdn.leaderboard", ["/nonexistent", "--top_k=-1"], "top_k"),
    ],
)
def test_out_of_range_flags_are_one_line_exit_2(module, args, flag):
    """These were tracebacks from deep inside the data pipeline or XLA (a zero range step, a negative shape)."""
    assert f"--{flag}=" in one_line(run(module, *args), module)


def test_decoder_settings_and_task_mismatch_are_input_errors():
    """fdn.convert --agg_size=-1 (or --num_classes=0, config.model.num_classes=-3 in fdn.train) failed in Flax with
    a traceback; --task=depth with 21 classes raised a plain ValueError (a traceback)."""
    from fdn import genotype as G
    from fdn.errors import InputError
    from fdn.models.decoder import DecoderSettings
    from fdn.models.segmenter import ModelSpec

    for bad in ({"agg_size": -1}, {"num_classes": 0}, {"repeats": 0}):
        name, value = next(iter(bad.items()))
        with pytest.raises(InputError, match=f"decoder setting {name}={value}: it must be at least 1"):
            DecoderSettings(**bad)
    with pytest.raises(InputError, match="give num_classes=1"):
        ModelSpec(G.ARCH0, DecoderSettings(21), "depth")


# ------------------------------------------------------------------------------------ datasets
def test_unknown_dataset_config_and_split_are_user_errors(shapes_dir):  # noqa: F811
    """tfds raised its own errors (a traceback with its list of a thousand datasets) in fdn.data.prepare,
    fdn.evaluate --dataset / --split, and fdn.search / fdn.train with a misspelled data.name or split."""
    from fdn.data import lookup, pipeline, prepare
    from fdn.errors import UserError

    with pytest.raises(UserError, match="unknown dataset 'nosuch'; fdn's datasets are cityscapes_fine, "):
        pipeline.data_source("nosuch", "val", shapes_dir)
    with pytest.raises(UserError, match="voc_sbd has no config 'nosuch'"):
        prepare.prepare("voc_sbd/nosuch", data_dir=shapes_dir)
    with pytest.raises(UserError, match="fdn_shapes has no split 'vall'; choose one of train, val"):
        pipeline.data_source("fdn_shapes", "vall", shapes_dir)
    assert "image_folder" in lookup.fdn_datasets() and len(pipeline.data_source("fdn_shapes", "val", shapes_dir))


# ------------------------------------------------------------------------------------ training settings
def test_training_settings_out_of_range_are_input_errors():
    """fdn.train with config.optim.optimizer=adamw, lrs for another number of stages, or data.batch_size=0 ended in
    a ValueError traceback (the last one from inside grain)."""
    from configs import demo_train
    from fdn import sharding
    from fdn.errors import InputError
    from fdn.train import step as train_step

    optim = demo_train.get_config("tiny").optim
    optim.stage_epochs = (1,)
    with pytest.raises(InputError, match=r"config.optim.enc_lrs has 3 learning rates for 1 stages .*one per stage"):
        train_step.lr_schedules(optim, steps_per_epoch=2, batch_size=2)
    optim = demo_train.get_config("tiny").optim
    optim.optimizer = "adamw"
    with pytest.raises(InputError, match="config.optim.optimizer must be 'sgd' or 'adam', got 'adamw'"):
        train_step.make_optimizer(optim, {}, None, steps_per_epoch=2, batch_size=2)
    with pytest.raises(InputError, match="data.batch_size=0: a batch needs at least one image"):
        sharding.check_batch(0, sharding.make_mesh(), "data.batch_size")


NAN_TRAINING = """
import sys
from fdn.cli import run_command
from fdn.train import loop


def nan(config, workdir):
    raise loop.NonFiniteLossError("the training loss became NaN/inf at step 6; lower the learning rates")


loop.run = nan
from fdn.train import __main__ as command

run_command(command.main, "fdn.train")
"""


def test_a_nan_loss_is_one_line_exit_2(tmp_path):
    """fdn.train stopped on a NaN loss with exit code 3; the definition of done says 2, as for all bad input."""
    done = subprocess.run(
        [sys.executable, "-c", NAN_TRAINING, "--config=configs/demo_train.py:tiny", f"--workdir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "NaN/inf at step 6" in one_line(done, "fdn.train")


# ------------------------------------------------------------------------------------ search settings
def test_search_agent_and_candidate_count_are_user_errors():
    """--config.agent=foo was a ValueError traceback; --config.num_candidates=-5 prepared the data and wrote a
    workdir, then exited 0 having scored nothing."""
    from configs import demo
    from fdn.agents import make_agent
    from fdn.errors import UserError
    from fdn.search import setup

    with pytest.raises(UserError, match=r"unknown agent 'foo'; choose one of: ppo, reinforce, random \(config.agent\)"):
        make_agent("foo")
    with pytest.raises(UserError, match="at least 1"):
        make_agent("ppo", {"buffer_size": 0})
    config = demo.get_config("tiny")
    config.num_candidates = -5
    with pytest.raises(UserError, match="num_candidates=-5: a search scores at least 1 candidate"):
        setup.check_settings(config, 1)
    config.num_candidates = 1
    setup.check_settings(config, 1)


# ------------------------------------------------------------------------------------ evaluation flags
def test_crop_and_size_flags_share_one_rule():
    """fdn.evaluate --crop=0x0 was a traceback from XLA while fdn.export --size refused it: one rule for both."""
    from fdn.errors import InputError
    from fdn.serve import evaluation

    with pytest.raises(InputError, match=r"--crop must be at least 32x32 .*got '0x0'"):
        evaluation.crop_of("0x0", {})
    with pytest.raises(InputError, match="--crop must be HxW"):
        evaluation.crop_of("64x64x3", {})
    assert evaluation.crop_of("64", {}) == (64, 64) and evaluation.crop_of(None, {"crop_size": [32, 48]}) == (32, 48)


def test_omit_classes_must_be_class_indices_of_the_model():
    """fdn.evaluate --omit_classes=abc was a traceback and --omit_classes=99 (of 7 classes) silently did nothing;
    fdn.train checks config.eval.omit_classes before training with the same rule."""
    from fdn.errors import InputError
    from fdn.serve import evaluation

    with pytest.raises(InputError, match=r"--omit_classes must be class indices, e.g. 0 or 0,3, got \['abc'\]"):
        evaluation.omit_of(["abc"], {}, 7)
    with pytest.raises(InputError, match=r"--omit_classes \[99\]: the model's classes are 0..6"):
        evaluation.omit_of(["99"], {}, 7)
    with pytest.raises(InputError, match=r"config.eval.omit_classes \[7\]"):
        evaluation.check_omit((7,), 7, "config.eval.omit_classes")
    assert evaluation.omit_of(None, {"omit_classes": [0]}, 7) == [0] and evaluation.omit_of(["0", "6"], {}, 7) == [0, 6]


def test_evaluate_json_that_is_a_directory_is_refused_before_evaluating(tmp_path):
    """It failed with IsADirectoryError (a traceback) after the whole evaluation."""
    line = one_line(run("fdn.evaluate", f"--checkpoint={tmp_path / 'nope'}", f"--json={tmp_path}"), "fdn.evaluate")
    assert f"--json={tmp_path} is a directory; give a file name" in line


def test_path_errors_of_the_operating_system_say_what_to_do(tmp_path, capsys):
    """``--png`` / ``--png_dir`` / ``--workdir`` naming a file printed only "[Errno 17] File exists: 'PATH'"."""
    from fdn import errors
    from fdn.serve import checkpoint

    @errors.report_user_errors("fdn.thing")
    def main(path):
        path.mkdir()

    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as info:
        main(tmp_path / "file")
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"fdn.thing: error: {tmp_path / 'file'}: file exists; something is already there (a file where a directory "
        "is wanted?): move it or give another path\n"
    )
    assert errors.describe(FileNotFoundError("no /y")) == "no /y"
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint directory at .*; give an fdn checkpoint"):
        checkpoint.read_spec(tmp_path / "nope")


# ------------------------------------------------------------------------------------ a search's log
def test_a_damaged_line_in_the_search_log_is_an_error_not_the_end_of_the_log(tmp_path):
    """A complete line that is not JSON made the reader stop there silently: fdn.leaderboard ranked only the
    records before it (exit 0) and fdn.train --config.genotype=WORKDIR#1 could pick another design."""
    from fdn import run_records
    from fdn.errors import UserError

    log = tmp_path / run_records.FILENAME
    good = '{"index": 0, "reward": 0.5}\n'
    log.write_text(good + "garbage\n" + good)
    with pytest.raises(UserError, match=r"candidates.jsonl line 2 is not a JSON record: .*restore it from a copy"):
        run_records.read(tmp_path)
    assert log.read_text() == good + "garbage\n" + good
    log.write_text(good + '{"index": 1, "rew')  # a torn last line (killed mid-write) is still skipped
    assert run_records.read(tmp_path) == [{"index": 0, "reward": 0.5}]


def test_bench_latency_unknown_runtime_is_a_user_error():
    """fdn.bench latency --runtimes=nosuch was a ValueError traceback."""
    from fdn.bench import latency
    from fdn.errors import UserError

    with pytest.raises(UserError, match="--runtimes: unknown runtime 'nosuch'; choose from fdn, stablehlo, onnx"):
        latency.runtimes_available(["fdn", "nosuch"])


def test_a_file_torch_cannot_load_says_what_to_give_instead(tmp_path):
    """fdn.convert --from=a text file named .pth printed torch's reason only, on several lines."""
    pytest.importorskip("torch")
    from fdn.convert import cli
    from fdn.convert.files import StateDictError

    (tmp_path / "junk.pth").write_text("not a state dict\n")
    with pytest.raises(StateDictError, match=r"; give an official PyTorch state dict \(.pth/.pth.tar\)") as info:
        cli.run(str(tmp_path / "junk.pth"), tmp_path / "out", "arch0")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ a training's record
def test_a_training_rerun_that_cannot_restore_keeps_config_json(shapes_dir, tmp_path, monkeypatch):  # noqa: F811
    """fdn.train rewrote WORKDIR/config.json with the new settings before the restore failed on them (e.g.
    --config.model.agg_size=16 over agg-8 checkpoints), so the record of what trained the checkpoints was lost."""
    from configs import demo_train
    from fdn.checkpointing import CheckpointError
    from fdn.train import loop as train_loop
    from fdn.train import setup

    def other_settings(*args, **kwargs):
        raise CheckpointError("cannot restore step 6: other settings; use a new directory")

    monkeypatch.setattr(setup, "initial_state", other_settings)
    config = demo_train.get_config("tiny")
    config.data.data_dir = str(shapes_dir)
    (tmp_path / "config.json").write_text('{"the": "settings of the checkpoints"}')
    with pytest.raises(CheckpointError):
        train_loop.run(config, tmp_path, log=lambda *a: None)
    assert (tmp_path / "config.json").read_text() == '{"the": "settings of the checkpoints"}'


def test_scale_range_must_be_two_increasing_positive_numbers():
    """--config.data.scale_range=abc or (2.0, 0.5) failed inside a grain worker, after data and teacher set-up."""
    from fdn.data import augment
    from fdn.errors import InputError

    with pytest.raises(InputError, match=r"data.scale_range must be two numbers \(low, high\)"):
        augment.TrainTransform(32, scale_range=("abc",))
    with pytest.raises(InputError, match=r"data.scale_range \(2.0, 0.5\): need 0 < low <= high"):
        augment.TrainTransform(32, scale_range=(2.0, 0.5))
    assert augment.TrainTransform(32, scale_range=[0.5, 2]).scale_range == (0.5, 2.0)

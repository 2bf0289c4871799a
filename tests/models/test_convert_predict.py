"""fdn.convert then fdn.predict reproduce the official outputs; bad checkpoints and inputs give clear errors."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from fdn import genotype as G
from fdn import predict
from fdn.convert import cli
from fdn.convert.segmenter import ConversionError, torch_from_variables, variables_from_torch
from fdn.errors import InputError
from fdn.models.decoder import DecoderSettings
from fdn.models.segmenter import ModelSpec
from fdn.serve import checkpoint
from fdn.serve.export import random_variables
from tests.models.conftest import PARITY, SAMPLES, load_case, nchw, rel_l2

TINY = ModelSpec(G.ARCH0, DecoderSettings(num_classes=4, agg_size=8, repeats=1, aux_cell=False))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    variables = random_variables(TINY, 0)
    return checkpoint.save_model(tmp_path_factory.mktemp("ck") / "tiny", variables, TINY), variables


def test_convert_then_predict_reproduces_official_search_a(tmp_path):
    arrays, meta = load_case("search_a")
    message = cli.run(str(PARITY / "search_a.npz"), tmp_path / "ck", str(meta["genotype"]), 21, 48, 1, True)
    assert "748,260" not in message and "parameters" in message
    np.save(tmp_path / "x.npy", arrays["128x160/input"].transpose(0, 2, 3, 1))
    predict.run(tmp_path / "ck", tmp_path / "out.npz", [tmp_path / "x.npy"])
    with np.load(tmp_path / "out.npz") as out:
        assert rel_l2(nchw(out["logits"]), arrays["128x160/eval/out"]) < 1e-4
        for k in range(3):
            assert rel_l2(nchw(out[f"aux_logits_{k}"]), arrays[f"128x160/eval/aux{k}"]) < 1e-4


def test_reverse_conversion_gives_back_the_official_state_dict(tmp_path):
    arrays, meta = load_case("voc_arch0")
    cli.run(str(PARITY / "voc_arch0.npz"), tmp_path / "ck", "arch0")  # released settings are the defaults
    cli.run(str(tmp_path / "ck"), tmp_path / "back.npz")
    with np.load(tmp_path / "back.npz") as back:
        state_keys = [k for k in arrays if "/" not in k]
        assert sorted(back.files) == sorted(state_keys)
        for k in state_keys:
            if not k.endswith("num_batches_tracked"):
                np.testing.assert_array_equal(back[k], arrays[k], err_msg=k)


def test_round_trip_without_shared(tiny_checkpoint):
    _, variables = tiny_checkpoint
    sd = torch_from_variables(variables)
    again = variables_from_torch(sd, TINY)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)


def test_mismatched_state_dict_names_every_key(tiny_checkpoint):
    _, variables = tiny_checkpoint
    sd = torch_from_variables(variables)
    del sd["decoder.conv_clf.bias"]
    sd["decoder.bogus.weight"] = np.zeros(3)
    sd["decoder.pre_clf.0.weight"] = np.zeros((8, 5, 1, 1), np.float32)
    with pytest.raises(ConversionError) as err:
        variables_from_torch(sd, TINY)
    text = str(err.value)
    assert "problem(s), listed below; give the --genotype, --num_classes" in text.splitlines()[0]  # what to do
    assert "missing key decoder.conv_clf.bias" in text
    assert "unexpected key decoder.bogus.weight" in text
    assert "wrong shape for decoder.pre_clf.0.weight: got (8, 5, 1, 1), expected (8, 24, 1, 1)" in text


def test_wrong_genotype_for_a_checkpoint_is_reported(tmp_path):
    load_case("voc_arch0")
    with pytest.raises(ConversionError, match="unexpected key decoder.cells"):
        cli.run(str(PARITY / "voc_arch0.npz"), tmp_path / "ck", "arch1")
    assert not (tmp_path / "ck").exists()


def test_corrupt_checkpoints_give_clear_errors(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint directory"):
        checkpoint.load_model(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="fdn_model.json is missing"):
        checkpoint.load_model(tmp_path / "half")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    for f in (broken / "variables").rglob("*"):
        if f.is_file() and f.stat().st_size > 100 and "METADATA" not in f.name:
            f.write_bytes(b"\0" * 16)
    with pytest.raises(checkpoint.CheckpointError, match="cannot restore the variables"):
        checkpoint.load_model(broken)
    (broken / "fdn_model.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.load_model(broken)


def test_bad_inputs_give_clear_errors(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    np.save(tmp_path / "chw.npy", np.zeros((2, 3, 32, 32), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((1, 32, 32, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.png").write_bytes(b"not a png")
    cases = {
        "chw.npy": "expected (N, H, W, 3)",
        "ints.npy": "expected normalised float32",
        "notes.txt": "unsupported input type",
        "fake.png": "not a readable image",
        "missing.png": "does not exist",
    }
    for name, message in cases.items():
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            predict.run(path, tmp_path / "o.npz", [tmp_path / name])


def test_predict_writes_pngs_for_images(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (37, 53, 3), np.uint8)).save(tmp_path / f"im{i}.png")
    message = predict.run(path, tmp_path / "o.npz", [tmp_path / "im0.png", tmp_path / "im1.png"], png=tmp_path / "vis")
    assert "wrote 2 PNG" in message
    with Image.open(tmp_path / "vis" / "im1.png") as im:
        assert im.size == (53, 37) and im.mode == "P"
    with np.load(tmp_path / "o.npz") as out:
        assert out["logits"].shape == (2, 10, 14, 4)


def test_predict_on_real_voc_samples(tiny_checkpoint, tmp_path):
    if not SAMPLES.is_dir():
        pytest.skip("../shared absent")
    path, _ = tiny_checkpoint
    image = SAMPLES / "voc" / "2007_006171.jpg"
    predict.run(path, tmp_path / "o.npz", [image], png=tmp_path / "vis")
    with Image.open(tmp_path / "vis" / "2007_006171.png") as im:
        assert im.size == (500, 375)


def test_command_line_errors_are_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fdn.convert",
            f"--from={tmp_path}/missing.pth",
            "--genotype=arch0",
            f"--out={tmp_path}/ck",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "fdn.convert: error: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "fdn.predict", f"--checkpoint={tmp_path}", f"--out={tmp_path}/o.npz", "x.png"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "fdn_model.json is missing" in proc.stderr


def test_reads_pth_files_with_torch(tiny_checkpoint, tmp_path):
    torch = pytest.importorskip("torch")
    _, variables = tiny_checkpoint
    sd = {k: torch.from_numpy(np.array(v)) for k, v in torch_from_variables(variables).items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "model.pth.tar")
    message = cli.run(str(tmp_path / "model.pth.tar"), tmp_path / "ck", str(TINY.genotype), 4, 8, 1, False)
    assert "wrote" in message
    _, restored, _ = checkpoint.load_model(tmp_path / "ck")
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    from fdn.convert.files import StateDictError

    with pytest.raises(StateDictError, match="could not be loaded"):
        cli.run(str(tmp_path / "junk.pth"), tmp_path / "ck2", "arch0")

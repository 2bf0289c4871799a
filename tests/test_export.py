"""Exported artifacts compute what fdn computes (eval mode, main head) within 1e-4, and run without fdn.

A small decoder (agg 16, repeats 1) on the full MobileNet-v2 encoder at 64x64 keeps compiles short; weights
and BN statistics are random so that BN folding is exercised with non-trivial numbers.
"""

import importlib.util
import json

import jax
import numpy as np
import pytest

from fdn import genotype as G
from fdn.models.decoder import DecoderSettings
from fdn.models.segmenter import ModelSpec
from fdn.serve import checkpoint
from fdn.serve import export as E
from fdn.serve.inference import make_forward

SIZE = (64, 64)


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(checkpoint dir, spec, variables, images, fdn's eval-mode logits)."""
    spec = ModelSpec(G.parse("arch0"), DecoderSettings(21, 16, 1, False))
    variables = E.random_variables(spec, seed=1, random_bn_stats=True)
    directory = checkpoint.save_model(tmp_path_factory.mktemp("export") / "ckpt", variables, spec)
    images = np.random.default_rng(2).normal(size=(1, *SIZE, 3)).astype(np.float32)
    with jax.default_matmul_precision("highest"):
        logits, aux = make_forward(spec, with_aux=False)(variables, images)
    assert aux == []
    return directory, spec, variables, images, np.asarray(logits)


def test_fold_batch_norm_folds_every_bn(model):
    _, _, variables, _, _ = model
    folded = E.fold_batch_norm(variables)
    flat = jax.tree_util.tree_flatten_with_path(folded["params"])[0]
    scales = [np.asarray(v) for p, v in flat if p[-1].key == "scale"]
    assert scales and all(np.all(s == 1) for s in scales)
    with pytest.raises(E.ExportError, match="cannot fold BN"):
        E.fold_batch_norm(
            {
                "params": {"a": {"norm": {"scale": np.ones(2), "bias": np.zeros(2)}}},
                "batch_stats": {"a": {"norm": {"mean": np.zeros(2), "var": np.ones(2)}}},
            }
        )


def test_stablehlo_artifact_matches_fdn(model, tmp_path):
    directory, spec, _, images, want = model
    out = tmp_path / "model.stablehlo"
    message = E.export_checkpoint(directory, "stablehlo", out, E.ExportSpec(1, *SIZE))
    assert "BN folded" in message
    info = json.loads((tmp_path / "model.stablehlo.json").read_text())
    assert info["input"]["shape"] == [1, *SIZE, 3] and info["aux_heads"] is False
    # What a user without fdn does: only jax.
    exported = jax.export.deserialize(bytearray(out.read_bytes()))
    assert set(exported.platforms) == {"cpu", "cuda"}
    assert exported.in_avals[0].shape == (1, *SIZE, 3)
    got = exported.call(images)
    assert got.shape == want.shape
    assert rel_l2(got, want) < 1e-4


def test_stablehlo_symbolic_batch(model):
    _, spec, variables, images, want = model
    blob = E.export_stablehlo(spec, variables, E.ExportSpec(None, *SIZE), platforms=("cpu",))
    call = E.load_stablehlo(blob)
    got = np.asarray(call(np.concatenate([images, images[:, ::-1]])))
    assert got.shape[0] == 2 and rel_l2(got[:1], want) < 1e-4


def test_export_refuses_to_overwrite_and_unknown_formats(model, tmp_path):
    directory = model[0]
    (tmp_path / "x").write_bytes(b"")
    with pytest.raises(FileExistsError):
        E.export_checkpoint(directory, "stablehlo", tmp_path / "x")
    with pytest.raises(E.ExportError, match="format"):
        E.export_checkpoint(directory, "tflite", tmp_path / "y")


ONNX_MISSING = importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("jax2onnx") is None


@pytest.mark.skipif(ONNX_MISSING, reason="onnxruntime / jax2onnx not installed (pip install fdn[export])")
def test_onnx_artifact_matches_fdn(model, tmp_path):
    import onnxruntime as ort

    directory, _, _, images, want = model
    out = tmp_path / "model.onnx"
    E.export_checkpoint(directory, "onnx", out, E.ExportSpec(1, *SIZE))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    got = session.run(None, {"images": images})[0]
    assert got.shape == want.shape
    assert rel_l2(got, want) < 1e-4


def test_cli_reports_user_errors(tmp_path):
    import subprocess
    import sys

    cli = [sys.executable, "-m", "fdn.export"]
    proc = subprocess.run(
        cli + [f"--checkpoint={tmp_path}/none", "--out=x.stablehlo"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "fdn.export: error: no checkpoint directory" in proc.stderr, proc.stderr
    proc = subprocess.run(
        cli + [f"--checkpoint={tmp_path}", "--size=64", "--out=x"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "--size must be HxW" in proc.stderr, proc.stderr

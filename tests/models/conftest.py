"""Shared fixtures for the model tests: where ``../shared`` lives and how to load an official parity case."""

import json
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PARITY = SHARED / "parity"
SAMPLES = SHARED / "data" / "samples"


def rel_l2(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def nchw(x):
    return np.asarray(x).transpose(0, 3, 1, 2)


def load_case(name):
    if not (PARITY / f"{name}.npz").is_file():
        pytest.skip(f"parity fixture {name} not available (../shared absent)")
    with np.load(PARITY / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads((PARITY / f"{name}.json").read_text())
    return arrays, meta


def spec_of(meta):
    from fdn import genotype as G
    from fdn.models.decoder import DecoderSettings
    from fdn.models.segmenter import ModelSpec

    kw = meta["decoder"]["kwargs"]
    settings = DecoderSettings(kw["num_classes"], kw["agg_size"], kw["repeats"], kw["aux_cell"])
    return ModelSpec(G.parse(meta["genotype"]), settings, "depth" if kw["num_classes"] == 1 else "segmentation")

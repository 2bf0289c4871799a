"""fdn computes what the official PyTorch models compute (../shared/parity, random weights and BN stats).

Tolerances from the issue: relative L2 < 1e-4 in eval mode, < 1e-3 in train mode, BN running statistics after
one train-mode forward < 1e-4.
"""

import jax
import pytest

from fdn.convert.segmenter import torch_from_variables, variables_from_torch
from tests.models.conftest import PARITY, load_case, nchw, rel_l2, spec_of


def _forward_cases():
    """Every forward case in ../shared/parity (a .json with decoder settings beside its .npz), so new cases
    added there are checked without touching this file; the three known ones when ../shared is absent
    (they then skip)."""
    import json

    found = []
    for meta_file in sorted(PARITY.glob("*.json")) if PARITY.is_dir() else []:
        meta = json.loads(meta_file.read_text())
        if isinstance(meta.get("decoder"), dict) and "kwargs" in meta["decoder"] and "genotype" in meta:
            found.append(meta_file.stem)
    return found or ["search_a", "voc_arch0", "nyud_arch0"]


CASES = _forward_cases()


@pytest.fixture(scope="module", params=CASES)
def case(request):
    arrays, meta = load_case(request.param)
    spec = spec_of(meta)
    variables = variables_from_torch(arrays, spec)
    model = spec.build()

    @jax.jit
    def both_modes(variables, x):
        fwd = model.forward_with_features
        eval_enc, *eval_out = model.apply(variables, x, train=False, method=fwd)
        (train_enc, *train_out), updates = model.apply(variables, x, train=True, method=fwd, mutable=["batch_stats"])
        return eval_out, eval_enc, train_out, train_enc, updates["batch_stats"]

    results = {}
    sizes = sorted(k.split("/")[0] for k in arrays if k.endswith("/input"))
    assert sizes, "a parity case holds at least one '<H>x<W>/input'"
    with jax.default_matmul_precision("highest"):
        for size in sizes:
            x = arrays[f"{size}/input"].transpose(0, 2, 3, 1)
            results[size] = jax.device_get(both_modes(variables, x))
    return request.param, arrays, results


def test_eval_mode_matches_official(case):
    name, arrays, results = case
    for size in results:
        _check_eval(name, size, arrays, results)


def test_train_mode_matches_official(case):
    name, arrays, results = case
    for size in results:
        _check_train(name, size, arrays, results)


def test_batchnorm_statistics_after_train_forward(case):
    name, arrays, results = case
    for size in results:
        _check_batch_stats(name, size, arrays, results)


def _check_eval(name, size, arrays, results):
    (logits, aux), enc, _, _, _ = results[size]
    errors = {"out": rel_l2(nchw(logits), arrays[f"{size}/eval/out"])}
    errors.update({f"aux{k}": rel_l2(nchw(a), arrays[f"{size}/eval/aux{k}"]) for k, a in enumerate(aux)})
    errors.update({f"enc_out{k}": rel_l2(nchw(e), arrays[f"{size}/eval/enc_out{k}"]) for k, e in enumerate(enc)})
    assert len(aux) == 3
    assert max(errors.values()) < 1e-4, (name, size, errors)


def _check_train(name, size, arrays, results):
    _, _, (logits, aux), enc, _ = results[size]
    errors = {"out": rel_l2(nchw(logits), arrays[f"{size}/train/out"])}
    errors.update({f"aux{k}": rel_l2(nchw(a), arrays[f"{size}/train/aux{k}"]) for k, a in enumerate(aux)})
    errors.update({f"enc_out{k}": rel_l2(nchw(e), arrays[f"{size}/train/enc_out{k}"]) for k, e in enumerate(enc)})
    assert max(errors.values()) < 1e-3, (name, size, errors)


def _check_batch_stats(name, size, arrays, results):
    batch_stats = results[size][4]
    post = torch_from_variables({"batch_stats": batch_stats})
    keys = [k for k in post if k.endswith(("running_mean", "running_var"))]
    assert len(keys) > 100
    errors = {k: rel_l2(post[k], arrays[f"{size}/train_post/{k}"]) for k in keys}
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-4, (name, size, worst, errors[worst])

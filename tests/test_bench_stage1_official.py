"""``fdn.bench stage1 --official_repo=DIR``: the glue that runs the official ``train_task0`` beside fdn's step.

The official code is not part of fdn, so a stand-in checkout (written here) records what the glue passes to
``train_task0`` and ``MicroDecoder``; a bad path is one line and exit 2 before anything compiles; the interleaved
timing calls every run the same number of times.
"""

import sys
import textwrap

import jax
import numpy as np
import pytest

from fdn import genotype as G
from fdn.bench import __main__ as bench_main
from fdn.bench import _official_stage1 as official
from fdn.bench import stage1 as bench_stage1
from fdn.candidate import default_config
from fdn.models.decoder import DecoderSettings

torch = pytest.importorskip("torch")

_STUBS = {
    "engine/trainer.py": """
        CALLS = []
        RESULT = [None]

        def train_task0(xy, segmenter, optim, epoch, segm_crit, kd_crit, batch_size, freeze_bn, do_kd, kd_coeff,
                        dec_grad_clip, do_polyak, avg_param=None, polyak_decay=0.9, aux_weight=0):
            CALLS.append(dict(xy=xy, decoder=segmenter.module.decoder, batch_size=batch_size, freeze_bn=freeze_bn,
                              do_kd=do_kd, kd_coeff=kd_coeff, clip=dec_grad_clip, do_polyak=do_polyak,
                              avg=avg_param, decay=polyak_decay, aux=aux_weight, ignore=segm_crit.ignore_index,
                              lr=optim.param_groups[0]["lr"], wd=optim.param_groups[0]["weight_decay"]))
            return RESULT[0]
    """,
    "nn/micro_decoders.py": """
        import torch

        class MicroDecoder(torch.nn.Module):
            def __init__(self, inp_sizes, num_classes, config, agg_size, aux_cell, repeats):
                super().__init__()
                self.args = (list(inp_sizes), num_classes, config, agg_size, aux_cell, repeats)
                self.w = torch.nn.Parameter(torch.zeros(3))
    """,
    "helpers/utils.py": """
        def init_polyak(do_polyak, module):
            return [p.data.clone() for p in module.parameters()] if do_polyak else None
    """,
}


@pytest.fixture
def stub_repo(tmp_path, monkeypatch):
    for rel, text in _STUBS.items():
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        (path.parent / "__init__.py").touch()
    for name in ("engine", "engine.trainer", "nn", "nn.micro_decoders", "helpers", "helpers.utils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in ("engine", "engine.trainer", "nn", "nn.micro_decoders", "helpers", "helpers.utils"):
        sys.modules.pop(name, None)


def _arrays(b=2, side=8, k=21):
    rng = np.random.default_rng(0)
    sides, chans = (side, side // 2, side // 4, side // 8), (24, 32, 96, 320)
    feats = [rng.normal(size=(b, s, s, c)).astype(np.float32) for s, c in zip(sides, chans)]
    labels = rng.integers(0, k, (b, side, side)).astype(np.uint8)
    teacher = rng.normal(size=(b, side, side, k)).astype(np.float32)
    return feats, labels, teacher


def test_official_step_gets_fdn_settings_and_the_same_arrays_in_nchw(stub_repo):
    genotype, settings, cfg = G.parse(bench_stage1.SEARCH_A), DecoderSettings.search(21), default_config().stage1
    feats, labels, teacher = _arrays()
    step, params = official.make_step(str(stub_repo), genotype, settings, cfg, feats, labels, teacher, threads=1)
    step()
    step()
    calls = sys.modules["engine.trainer"].CALLS
    assert len(calls) == 2 and params == 3
    call = calls[0]
    assert call["decoder"].args == ([24, 32, 96, 320], 21, genotype.to_list(), 48, True, 1)
    assert (call["batch_size"], call["freeze_bn"], call["do_kd"], call["do_polyak"]) == (2, False, True, True)
    assert (call["kd_coeff"], call["clip"], call["decay"], call["aux"]) == (0.3, 3.0, 0.9, 0.15)
    assert (call["lr"], call["wd"], call["ignore"]) == (3e-3, 1e-5, 255)
    xy = call["xy"]
    for i, f in enumerate(feats):
        np.testing.assert_array_equal(xy[i].numpy(), f.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(xy["kd_y"].numpy(), teacher.transpose(0, 3, 1, 2))
    assert xy["y"].dtype == torch.int64 and tuple(xy["out_size"]) == (8, 8)
    np.testing.assert_array_equal(xy["y"].numpy(), labels)


def test_swallowed_official_failure_is_raised(stub_repo):
    feats, labels, teacher = _arrays()
    step, _ = official.make_step(
        str(stub_repo), G.parse(bench_stage1.SEARCH_A), DecoderSettings.search(21), default_config().stage1,
        feats, labels, teacher, threads=1,
    )  # fmt: skip
    sys.modules["engine.trainer"].RESULT[0] = 0  # what its try_except returns after a RuntimeError
    with pytest.raises(RuntimeError, match="swallowed"):
        step()


def test_bad_official_repo_is_one_line_before_compiling(tmp_path, capsys, monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("the bench built fdn's step before checking --official_repo")

    monkeypatch.setattr(bench_stage1, "make_programs", no_compile)
    code = bench_main.main(["fdn.bench", "stage1", "--batch=1", "--crop=32", f"--official_repo={tmp_path}"])
    bench_stage1.FLAGS.unparse_flags()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "src/engine/trainer.py" in err and "nas-segm-pytorch" in err


def test_time_alternately_interleaves_the_runs():
    order = []
    runs = [(lambda: order.append("a"), tuple), (lambda: order.append("b"), tuple)]
    times = bench_stage1.time_alternately(runs, steps=3, warmup=1)
    assert [len(t) for t in times] == [3, 3]
    assert order == ["a", "b"] + ["a", "b"] * 3


def test_time_alternately_in_blocks_times_a_run_only_after_its_own_call():
    """Blocks of 2 over 5 steps: each turn is one untimed call then up to 2 timed ones, so every timed call follows
    a call of the same run (free memory reported to a VM's host between turns is not charged to a timed call)."""
    order = []
    runs = [(lambda: order.append("a"), tuple), (lambda: order.append("b"), tuple)]
    times = bench_stage1.time_alternately(runs, steps=5, warmup=1, block=2)
    assert [len(t) for t in times] == [5, 5]
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 2 + ["b"] * 2


def test_programs_default_to_what_a_paper_search_compiles_here():
    """``--programs`` defaults to 'auto', resolved for the paper's stage 1 on this platform (per genotype on a CPU,
    `fdn.candidate.programs.resolve_kind`); an explicit kind is kept."""
    want = "per_genotype" if jax.default_backend() == "cpu" else "universal"
    try:
        bench_stage1.FLAGS(["stage1"])
        assert bench_stage1.FLAGS.programs == "auto" and bench_stage1._programs_kind() == want
        bench_stage1.FLAGS(["stage1", "--programs=universal"])
        assert bench_stage1._programs_kind() == "universal"
    finally:
        bench_stage1.FLAGS.unparse_flags()

"""The latency model and the exact measures (`fdn.latency`): pieces that add up to whole released models
(parameters and XLA FLOPs exactly), the correction fit, and a cache that never re-measures what it has."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdn import genotype as G
from fdn.bench import latency_model as bench
from fdn.latency import exact, parts, table
from fdn.latency import pieces as P

TINY = P.Shape(input_size=32, batch=1, agg_size=8, repeats=2, num_classes=3)


def test_pieces_of_a_released_design():
    # arch0: blocks (l4,l4) (l4,l3) (l4,l1): l2 is never read, so its adapter is dead code; b3 is at l1's level
    g = G.parse("arch0")
    c = parts.count(g)
    assert c[("encoder", 3)] == 1 and ("adapter", 1) not in c
    assert {k for k in c if k[0] == "adapter"} == {("adapter", 0), ("adapter", 2), ("adapter", 3)}
    assert c[("agg", 3, 3)] == 1 and c[("agg", 2, 3)] == 1 and c[("agg", 0, 3)] == 1
    assert sum(n for k, n in c.items() if k[0] == "op") == 3 * 2 * 7
    # no block reads another, so all three are merged: b1 (l4) up to b2 (l3), that pair up to b3 (l1)
    assert c[("resize", 3, 2, 1)] == 1 and c[("resize", 2, 0, 2)] == 1 and c[("merge", 0, 3)] == 1
    held = parts.count(g, executed=False)
    assert {k for k in held if k[0] == "adapter"} == {("adapter", lv) for lv in range(4)}


def test_merge_fold_upsamples_the_coarser_side():
    # collected at levels 2, 0, 1: the l3 output is upsampled to l1 (1 block), then b at l2 joins at l1
    assert parts.merge_parts([2, 0, 1]) == [("resize", 2, 0, 1), ("resize", 1, 0, 1), ("merge", 0, 3)]
    # 0 then 2: the coarser newcomer is upsampled; 2 then 1 then 0: the running concat (2 blocks) is
    assert parts.merge_parts([0, 2]) == [("resize", 2, 0, 1), ("merge", 0, 2)]
    assert parts.merge_parts([2, 1, 0]) == [("resize", 2, 1, 1), ("resize", 1, 0, 2), ("merge", 0, 3)]


def test_every_genotype_uses_only_tabled_pieces():
    keys = set(parts.all_keys())
    rng = np.random.default_rng(0)
    for _ in range(300):
        g = table.random_genotype(rng)
        assert set(parts.count(g)) <= keys and set(parts.count(g, executed=False)) <= keys


@pytest.mark.parametrize("name", ["arch1", pytest.param("random", marks=pytest.mark.slow)])
def test_pieces_add_up_to_the_whole_model(name):
    """Parameters and XLA FLOPs summed from the pieces are the whole released model's, exactly."""
    g = G.parse(name) if name != "random" else table.random_genotype(np.random.default_rng(3))
    counts = exact.ExactCounts(TINY)
    whole = P.whole_model(g, TINY, P.target_device("cpu"))
    assert counts.parameters(g) == whole.parameters
    assert counts.flops(g) == pytest.approx(whole.flops, rel=1e-9)


def test_fit_recovers_a_known_correction():
    raw = np.array([10.0, 20.0, 35.0, 50.0])
    lin = table.fit_correction(raw, 3.0 + 0.8 * raw, "linear")
    assert lin["a"] == pytest.approx(3.0) and lin["b"] == pytest.approx(0.8)
    log = table.fit_correction(raw, 2.0 * raw**0.9, "loglinear")
    assert table.apply_correction(log, 40.0) == pytest.approx(2.0 * 40.0**0.9)


@pytest.fixture
def fake_timer(monkeypatch):
    """Pieces cost 1 ms per key element sum, whole models 0.5 + 1.1 x their raw sum; counts the measurements."""
    calls = {"table": 0, "models": 0}

    def measure_table(shape, target, **kw):
        calls["table"] += 1
        return {table.key_str(k): 1.0 + sum(v for v in k[1:]) for k in parts.all_keys()}

    def measure_models(genotypes, shape, target, **kw):
        calls["models"] += 1
        model = table.LatencyModel({}, measure_table(shape, target), {"fit": "linear", "a": 0.0, "b": 1.0}, [])
        calls["table"] -= 1
        return [0.5 + 1.1 * model.raw_ms(g) for g in genotypes]

    monkeypatch.setattr(table, "measure_table", measure_table)
    monkeypatch.setattr(table, "measure_models", measure_models)
    return calls


def test_cache_and_workdir_copy(tmp_path, fake_timer):
    shape = P.Shape(input_size=64)
    m1 = table.load_or_build(shape, "cpu", workdir=tmp_path / "w1", cache_dir=str(tmp_path / "cache"))
    assert fake_timer == {"table": 1, "models": 1}
    assert m1.correction["a"] == pytest.approx(0.5) and m1.correction["b"] == pytest.approx(1.1)
    assert len(m1.calibration) == 6 and len({json.dumps(c["genotype"]) for c in m1.calibration}) == 6
    g = G.parse("arch2")
    # a second search with the same key reads the cache; a resume reads its own workdir's copy
    m2 = table.load_or_build(shape, "cpu", workdir=tmp_path / "w2", cache_dir=str(tmp_path / "cache"))
    m3 = table.load_or_build(shape, "cpu", workdir=tmp_path / "w1", cache_dir="")
    assert fake_timer == {"table": 1, "models": 1}
    assert m1.estimate_ms(g) == m2.estimate_ms(g) == m3.estimate_ms(g)
    assert (tmp_path / "w2" / "latency_model.json").exists()
    # another shape is another key: measured anew, also where a workdir holds a model of the old key
    table.load_or_build(P.Shape(input_size=128), "cpu", workdir=tmp_path / "w3", cache_dir=str(tmp_path / "cache"))
    assert fake_timer == {"table": 2, "models": 2}
    table.load_or_build(P.Shape(input_size=96), "cpu", workdir=tmp_path / "w1", cache_dir="")
    assert fake_timer == {"table": 3, "models": 3}


def test_bench_statistics():
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert bench.ranks([5, 1, 5]).tolist() == [1.5, 0.0, 1.5]
    assert bench.median_relative_error([11, 18, 30], [10, 20, 30]) == pytest.approx(0.1)

"""Budgeted rewards (`fdn.search.budget`, issue #15 part 1): MnasNet's reward form, the settings' checks, the
record fields, and a search that logs quality and measure for every candidate."""

from __future__ import annotations

import math

import pytest

from configs import common
from fdn import genotype as G
from fdn.latency import table
from fdn.latency.pieces import Shape
from fdn.search import budget, run_log
from tests import test_search
from tests.test_search import voc_dir  # noqa: F401  (the miniature VOC fixture)


def cfg(**kw):
    c = budget.default_config()
    c.update(kw)
    return c


def test_mnasnet_soft_and_hard_constraints():
    # soft (w = -0.07 both sides): twice the target costs ~4.7% of quality, half of it gains ~5%
    assert budget.budgeted_reward(0.5, 20.0, 10.0, -0.07, -0.07) == pytest.approx(0.5 * 2**-0.07)
    assert budget.budgeted_reward(0.5, 5.0, 10.0, -0.07, -0.07) == pytest.approx(0.5 * 0.5**-0.07)
    # hard (w = 0 under, -1 over): no gain under the target, quality x T/m over it
    assert budget.budgeted_reward(0.5, 5.0, 10.0, 0.0, -1.0) == 0.5
    assert budget.budgeted_reward(0.5, 10.0, 10.0, 0.0, -1.0) == 0.5
    assert budget.budgeted_reward(0.5, 40.0, 10.0, 0.0, -1.0) == pytest.approx(0.125)
    # a failed candidate stays at 0; no measure leaves the quality
    assert budget.budgeted_reward(0.0, 40.0, 10.0, -0.07, -0.07) == 0.0
    assert budget.budgeted_reward(0.3, None, 10.0, -0.07, -0.07) == 0.3


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"objective": "speed"}, "reward.objective='speed' is not one of"),
        ({"objective": "latency"}, "needs reward.target > 0 (in milliseconds)"),
        ({"objective": "flops", "target": -1.0}, "needs reward.target > 0 (in FLOPs)"),
        ({"objective": "latency", "target": 5.0, "device": "tpu9"}, "reward.device='tpu9'"),
    ],
)
def test_bad_settings_are_one_line_user_errors(kw, words):
    with pytest.raises(budget.BudgetConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        budget.check(cfg(**kw))


def test_search_configs_have_the_reward_block():
    c = common.search_config()
    assert c.reward.objective == budget.QUALITY and c.reward.w_under == c.reward.w_over == -0.07


def test_demo_latency_preset():
    """``configs/demo.py:latency=T`` is the budgeted demo in one word: objective, target and the hard exponents."""
    from configs import demo

    r = demo.get_config("latency=25").reward
    assert (r.objective, r.target, r.w_under, r.w_over) == (budget.LATENCY, 25.0, 0.0, -1.0)
    budget.check(r)
    tiny = demo.get_config("tiny,latency=12.5")
    assert tiny.reward.target == 12.5 and tiny.num_candidates == 3
    assert demo.get_config().reward.objective == budget.QUALITY
    with pytest.raises(ValueError, match="needs a target in milliseconds"):
        demo.get_config("latency")


def test_quality_objective_keeps_the_reward():
    b = budget.Budget(cfg(), num_classes=21)
    rec = {"reward": 0.25, "params_without_aux": 1234}
    out = b.apply(rec, G.parse("arch0"))
    assert out["reward"] == 0.25 and out["quality"] == 0.25
    assert out["measure"] == {"name": "params_without_aux", "value": 1234.0}


def test_latency_objective_prices_from_the_workdir_model(tmp_path, monkeypatch):
    """A workdir that holds a latency model (a resume) is priced from it: no timing, same numbers."""
    c = cfg(objective="latency", target=30.0, device="cpu", input_size=64, cache_dir="")
    shape = Shape(64, 1, num_classes=5)
    tab = {table.key_str(k): 1.0 for k in table.parts.all_keys()}
    model = table.LatencyModel(
        table.cache_key(shape, "cpu", c.calibration, c.fit), tab, {"fit": "linear", "a": 2.0, "b": 0.5}, []
    )
    (tmp_path / "latency_model.json").write_text(model.to_json())
    monkeypatch.setattr(table, "build", lambda *a, **k: pytest.fail("the workdir's model must be reused"))
    lines = []
    b = budget.Budget(c, num_classes=5, workdir=tmp_path, log=lines.append)
    g = G.parse("arch1")
    expected = 2.0 + 0.5 * sum(table.parts.count(g).values())
    out = b.apply({"reward": 0.4}, g)
    assert out["measure"] == {"name": "latency_ms", "value": pytest.approx(expected), "target": 30.0}
    assert out["quality"] == 0.4
    assert out["reward"] == pytest.approx(0.4 * (expected / 30.0) ** -0.07)
    # the start-up line says how many random designs the target admits (here every piece is 1 ms: 30 ms admits none)
    assert any("the target 30 ms admits 0% of them" in line for line in lines), lines


def test_target_share_of_random_designs():
    """The share of seeded random designs under a target and their percentiles (a fake measure: pieces counted)."""
    count = lambda g: float(sum(table.parts.count(g).values()))  # noqa: E731
    share, (p10, p50, p90) = budget.target_share(count, 0.0, n=200)
    assert share == 0.0 and p10 <= p50 <= p90
    assert budget.target_share(count, p50, n=200)[0] == pytest.approx(0.5, abs=0.1)
    assert budget.target_share(count, p90, n=200)[0] == pytest.approx(0.9, abs=0.05)
    assert budget.target_share(count, p50, n=200) == budget.target_share(count, p50, n=200)  # seeded


def test_search_logs_quality_and_measure_for_every_candidate(voc_dir, tmp_path):  # noqa: F811
    """objective=params through the whole loop (fake trainer): every record has quality and the released-form
    parameter count, and its reward is the budgeted one."""
    c = test_search.tiny_config(voc_dir, n=3)
    c.reward.objective = "params"
    c.reward.target = 2e4
    c.reward.w_under, c.reward.w_over = 0.0, -1.0
    c.reward.input_size = 32
    test_search.run(c, tmp_path / "w")
    records = run_log.read(tmp_path / "w")
    assert len(records) == 3
    for r in records:
        m = r["measure"]
        assert m["name"] == "released_params" and m["value"] > 0 and m["target"] == 2e4
        w = 0.0 if m["value"] <= 2e4 else -1.0
        assert math.isclose(r["reward"], r["quality"] * (m["value"] / 2e4) ** w, rel_tol=1e-9)

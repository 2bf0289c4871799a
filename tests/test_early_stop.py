"""The official TaskPerformer rule (paper.md 3.3), its seeding and its resumable state."""

import json

import numpy as np
import pytest

from fdn.search import early_stop


class OfficialPerformer:
    """The official rule transcribed with an injectable uniform draw, as the reference."""

    def __init__(self, uniform, maxval=0.01, delta=0.9):
        self.uniform, self.maxval, self.delta, self.n_steps = uniform, maxval, delta, 0

    def step(self, reward):
        self.delta *= {100: 0.9, 200: 0.8, 300: 0.7, 400: 0.6}.get(self.n_steps, 1)
        self.n_steps += 1
        self.maxval = 0.99 * self.maxval + 0.01 * reward
        if reward > self.maxval:
            self.n_steps += 1
            return True
        return reward > self.maxval * (1 - self.uniform(0, self.delta))


def test_matches_the_official_rule_draw_for_draw():
    state = early_stop.init(seed=7)
    draws = []

    def replay(low, high):  # the reference consumes exactly the draws fdn made
        return draws.pop(0)

    reference = OfficialPerformer(replay)
    rng = np.random.default_rng(0)
    for i in range(600):
        reward = float(np.clip(rng.normal(0.3 + 0.0005 * i, 0.1), 0, 1)) if i % 7 else 0.0
        before = int(state["draws"])
        state, go_on, info = early_stop.step(state, reward, i)
        if int(state["draws"]) > before:
            draws.append(info["tolerance"])
        assert go_on == reference.step(reward)
        assert float(state["maxval"]) == pytest.approx(reference.maxval, abs=1e-15)
        assert float(state["delta"]) == pytest.approx(reference.delta, abs=1e-15)
        assert int(state["n_steps"]) == reference.n_steps
        assert info["threshold"] == float(state["maxval"])


def test_above_the_mean_continues_and_counts_twice():
    state, go_on, info = early_stop.step(early_stop.init(0), 0.5, 0)
    assert go_on and info["tolerance"] is None
    assert int(state["n_steps"]) == 2 and int(state["draws"]) == 0
    assert float(state["maxval"]) == pytest.approx(0.99 * 0.01 + 0.01 * 0.5)


def test_delta_schedule_fires_when_n_steps_lands_on_100():
    state = early_stop.init(0)
    state["n_steps"] = np.int64(100)
    state, _, info = early_stop.step(state, 0.0, 0)
    assert info["delta"] == pytest.approx(0.9 * 0.9)
    state["n_steps"] = np.int64(150)
    state, _, info = early_stop.step(state, 0.0, 1)
    assert info["delta"] == pytest.approx(0.81)


def test_zero_reward_always_stops():
    state = early_stop.init(3)
    for i in range(20):
        state, go_on, _ = early_stop.step(state, 0.0, i)
        assert not go_on


def test_continue_probability_matches_the_formula():
    maxval, delta, reward = 0.4, 0.9, 0.25
    expected = early_stop.continue_probability(reward, maxval, delta)
    hits = 0
    n = 4000
    for i in range(n):
        state = early_stop.init(seed=i)
        state["maxval"] = np.float64((maxval - 0.01 * reward) / 0.99)  # so that the updated mean is maxval
        state["delta"] = np.float64(delta)
        state["n_steps"] = np.int64(1)
        _, go_on, _ = early_stop.step(state, reward, 0)
        hits += go_on
    assert expected == pytest.approx(1 - (1 - reward / maxval) / delta)
    assert hits / n == pytest.approx(expected, abs=0.03)


def test_seeded_and_resumable_through_json():
    """Same seed, same decisions; a state saved as JSON mid-way (as the search checkpoint does) continues
    exactly as the uninterrupted one."""
    rewards = np.random.default_rng(1).uniform(0, 0.05, 50)

    def run(state, rs, start=0):
        out = []
        for i, r in enumerate(rs, start):
            state, go_on, _ = early_stop.step(state, r, i)
            out.append(go_on)
        return state, out

    _, straight = run(early_stop.init(11), rewards)
    _, again = run(early_stop.init(11), rewards)
    assert straight == again
    _, other = run(early_stop.init(12), rewards)
    assert other != straight
    half, first = run(early_stop.init(11), rewards[:25])
    restored = early_stop.from_json(json.loads(json.dumps(early_stop.to_json(half))))
    _, second = run(restored, rewards[25:], 25)
    assert first + second == straight


def test_the_draw_is_keyed_by_the_candidate_index_not_by_earlier_draws():
    """Issue 13: candidate i draws the same u whichever state it decides against (with a lag, an older one),
    and different candidates draw differently."""
    low = early_stop.init(5)
    low["maxval"] = np.float64(0.5)  # every reward below the mean: a draw each time
    fresh = dict(low)
    after_draws = dict(low, draws=np.int64(17))  # as if 17 candidates had drawn before
    us = {early_stop.step(s, 0.3, 9)[2]["tolerance"] for s in (fresh, after_draws)}
    assert len(us) == 1
    assert early_stop.step(fresh, 0.3, 10)[2]["tolerance"] not in us


def test_delta_schedule_at_200_300_and_400():
    # delta is multiplied by 0.8, 0.7, 0.6 when n_steps lands on 200, 300, 400 (from 0.9: 0.72, 0.63, 0.54).
    for n_steps, want in ((200, 0.72), (300, 0.63), (400, 0.54), (500, 0.9)):
        state = early_stop.init(0)
        state["n_steps"] = np.int64(n_steps)
        _, _, info = early_stop.step(state, 0.0, 0)
        assert info["delta"] == pytest.approx(want), n_steps


def test_a_reward_equal_to_the_mean_is_not_above_it():
    # maxval 0.25 and reward 0.25: the updated mean is 0.99 * 0.25 + 0.01 * 0.25 = 0.25 (exact), and the official
    # rule's "r > maxval" is strict: no double count, a draw is made, and it continues (0.25 > 0.25 (1 - u), u > 0).
    state, go_on, info = early_stop.step(early_stop.init(0, maxval=0.25), 0.25, 0)
    assert info["threshold"] == 0.25 and info["tolerance"] is not None
    assert go_on and int(state["n_steps"]) == 1 and int(state["draws"]) == 1
    # maxval 0 and reward 0: not above the mean, and 0 > 0 * (1 - u) is false: it stops.
    _, go_on, _ = early_stop.step(early_stop.init(0, maxval=0.0), 0.0, 0)
    assert not go_on


def test_json_round_trip_keeps_float64():
    # A resumed search must compute in float64 exactly as the uninterrupted one: 0.1 + 1e-12 survives the round
    # trip (float32 would round it to 0.1f), and the next step gives the same bits.
    state = dict(early_stop.init(4), maxval=np.float64(0.1 + 1e-12), delta=np.float64(0.9 - 1e-12))
    restored = early_stop.from_json(json.loads(json.dumps(early_stop.to_json(state))))
    assert restored["maxval"].dtype == np.float64 and restored["delta"].dtype == np.float64
    assert restored["maxval"] == state["maxval"] and restored["delta"] == state["delta"]
    assert early_stop.step(restored, 0.3, 5)[0]["maxval"] == early_stop.step(state, 0.3, 5)[0]["maxval"]

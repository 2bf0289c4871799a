"""``python -m fdn.bench controller``: what the controller and its agents cost per architecture.

Rows: sampling (samples/s at a few batch sizes), log-prob evaluation of a 100-genotype buffer, one PPO update
with a full buffer at mini-batch 1 (the official schedule: 100 Adam steps) and at larger mini-batches, one
REINFORCE update. Each row: median wall time of ``--repeats`` calls after ``--warmup`` calls (compiles
excluded, reported separately). The official PyTorch update costs 1.4-1.8 s on the reference 2-core CPU
(``../shared/reference/official-baseline.md``).
"""

from __future__ import annotations

import jax
import numpy as np
from absl import flags

from fdn.agents import controller, make_agent
from fdn.bench._timing import time_calls

FLAGS = flags.FlagValues()
flags.DEFINE_integer("warmup", 2, "untimed calls before the timed ones", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("repeats", 10, "timed calls per row", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_list("minibatch_sizes", ["1", "10", "100"], "PPO mini-batch sizes", flag_values=FLAGS)


def _timed(fn, warmup, repeats):
    """(first call seconds, median seconds of the timed calls)."""
    timing = time_calls(fn, repeats=repeats, warmup=warmup + 1)
    return timing.first, timing.median


def _full_buffer_state(agent, key):
    """An agent state whose buffer is full (100 results), filled without running 100 updates."""
    state = agent.init(key)
    capacity = state.buffer.capacity
    actions, log_probs, _ = controller.sample(state.params, jax.random.PRNGKey(1), capacity)
    rewards = np.random.default_rng(0).uniform(0, 1, capacity).astype(np.float32)
    state = agent._record(state, actions, log_probs, rewards)
    assert int(state.buffer.count) == capacity
    return state, actions[:1], log_probs[:1]


def _update_row(name, config, warmup, repeats):
    agent = make_agent(name, config)
    state, actions, log_probs = _full_buffer_state(agent, jax.random.PRNGKey(0))

    def call():
        # always the same full-buffer state: every timed call does the same work
        new_state, metrics = agent.update(state, actions, log_probs, np.asarray([0.5], np.float32))
        jax.block_until_ready(new_state)
        return metrics

    first, median = _timed(call, warmup, repeats)
    steps = int(call().get("adam_steps", 1))
    return first, median, steps


def main(argv):
    FLAGS(argv)
    args = FLAGS

    params = controller.init_params(jax.random.PRNGKey(0))
    rows = []
    for n in (1, 100, 10_000):
        keys = iter(jax.random.split(jax.random.PRNGKey(1), 1 + args.warmup + args.repeats))
        first, median = _timed(
            lambda: jax.block_until_ready(controller.sample(params, next(keys), n)), args.warmup, args.repeats
        )
        rows.append((f"sample n={n}", first, median, f"{n / median:,.0f} samples/s"))
    actions = controller.sample(params, jax.random.PRNGKey(2), 100)[0]
    first, median = _timed(
        lambda: jax.block_until_ready(controller.log_prob_and_entropy(params, actions)), args.warmup, args.repeats
    )
    rows.append(("log_prob_and_entropy n=100", first, median, ""))

    for mb in (int(v) for v in args.minibatch_sizes):
        first, median, steps = _update_row("ppo", {"minibatch_size": mb}, args.warmup, args.repeats)
        label = "official schedule" if mb == 1 else "fast option"
        rows.append((f"PPO update, full buffer, mb={mb}", first, median, f"{steps} Adam steps ({label})"))
    first, median, _ = _update_row("reinforce", None, args.warmup, args.repeats)
    rows.append(("REINFORCE update (1 result)", first, median, "1 Adam step"))

    print(
        f"fdn.bench controller  (jax {jax.__version__}, {jax.devices()[0].platform}, median of "
        f"{args.repeats} after {args.warmup} warm-up calls)"
    )
    print(f"{'what':<36} {'first call s':>12} {'median ms':>10}  note")
    for what, first, median, note in rows:
        print(f"{what:<36} {first:>12.2f} {median * 1e3:>10.2f}  {note}")
    return 0

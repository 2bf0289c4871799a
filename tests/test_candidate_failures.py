"""A candidate the real trainer cannot score gets reward 0 with its reason, through the search's own
``fdn.search.loop.run_candidate`` (issue 16): a NaN loss, an out-of-memory error while running a step, a
compile error; in stage 2 (the stage-1 reward is kept) and in stage 1.

Failures are injected into ``fdn.candidate.CandidateTrainer`` on a tiny config: NaN images in the stage-2
stream, NaN features in the stage-1 cache, and an ``XlaRuntimeError``-like ``jax.errors.JaxRuntimeError``
raised by the compiled step or by the compile itself, which is how XLA reports both.

The same tiny trainer (compiling it is most of this file's time) also shows that a second genotype reuses the
compiled stage-1, evaluation and stage-2 programs of the universal decoder.
"""

import jax
import jax.monitoring
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fdn import genotype as G
from fdn.candidate import CandidateTrainer, Stage1Cache, build_stage1_cache, steps
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.init import draw_variables
from fdn.search import early_stop
from fdn.search.loop import run_candidate
from tests.test_candidate import TINY, _batches, _tiny_config
from tests.test_search import XLA_CACHE

OOM = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1234567 bytes."


@pytest.fixture(scope="module")
def trainer():
    rng = np.random.default_rng(0)
    encoder = MobileNetV2Encoder()
    abstract = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
    enc_vars = jax.device_put(draw_variables(abstract, 1))
    encode = jax.jit(lambda v, x: encoder.apply(v, x, train=False))
    cache = build_stage1_cache(encode, enc_vars, _batches(rng, 8, 32, 3, 4))
    train, val = _batches(rng, 6, 32, 3, 2), _batches(rng, 4, 32, 3, 2)
    config = _tiny_config()
    config.compilation_cache_dir = str(XLA_CACHE)  # XLA's persistent cache, as test_search: later runs load
    t = CandidateTrainer(config, 3, enc_vars, cache, lambda: iter(train), val)
    t.stage1(TINY, jax.random.PRNGKey(0))  # compile stage 1 and eval once for every test
    return t


def _search_config(early_stop_enabled=False):
    c = ml_collections.ConfigDict()
    c.max_stage = 2
    c.early_stop = ml_collections.ConfigDict({"enabled": early_stop_enabled})
    return c


def _run(trainer, early_stop_enabled=False):
    es = early_stop.init(0, maxval=0.0, delta=1e9)  # lets every candidate through to stage 2
    return run_candidate(trainer, TINY, jax.random.PRNGKey(5), es, _search_config(early_stop_enabled))


def _oom(*args, **kwargs):
    raise jax.errors.JaxRuntimeError(OOM)


def _assert_stage2_failure(rec, reason_part):
    assert rec["stage"] == 2 and rec["reward"] == 0.0, rec
    assert rec["failure"] is not None and reason_part in rec["failure"], rec["failure"]
    assert rec["stage1_reward"] is not None and rec["stage1_reward"] >= 0.0  # stage 1's reward is kept


def test_nan_images_in_stage2(trainer, monkeypatch):
    nan = _batches(np.random.default_rng(1), 6, 32, 3, 2)
    for b in nan:
        b["image"][:] = np.nan
    monkeypatch.setattr(trainer, "train_batches", lambda: iter(nan))
    rec, _ = _run(trainer)
    _assert_stage2_failure(rec, "stage 2: non-finite loss")


def test_out_of_memory_while_running_stage2(trainer, monkeypatch):
    monkeypatch.setattr(trainer.compiled, "stage2", lambda genotype: (_oom, 0.0))
    rec, _ = _run(trainer)
    _assert_stage2_failure(rec, "out of memory in stage 2")
    assert "RESOURCE_EXHAUSTED" in rec["failure"]


@pytest.mark.parametrize("error", ["oom", "compile"])
def test_stage2_compile_error(trainer, monkeypatch, error):
    """The stage-2 program fails while it is traced or compiled (a fresh compile-table entry); the candidate
    gets 0 with the compile named, and the table entry is restored afterwards."""

    def broken_step(*args, **kwargs):
        if error == "oom":
            _oom()
        raise TypeError("injected: cannot lower this program")

    key = (trainer.programs.key(TINY), "stage2")
    saved = trainer.compiled._compiled.pop(key, None)
    monkeypatch.setattr(steps, "stage2_step", broken_step)
    try:
        rec, _ = _run(trainer)
    finally:
        trainer.compiled._compiled.pop(key, None)
        if saved is not None:
            trainer.compiled._compiled[key] = saved
    _assert_stage2_failure(rec, "compiling stage2")
    assert ("out of memory" if error == "oom" else "injected: cannot lower") in rec["failure"]


def test_stage2_runs_when_nothing_is_injected(trainer):
    """The control: the same call without an injection reaches stage 2 with no failure."""
    rec, _ = _run(trainer)
    assert rec["stage"] == 2 and rec["failure"] is None and rec["stage1_reward"] is not None


def test_nan_features_in_stage1(trainer, monkeypatch):
    c = trainer.cache
    monkeypatch.setattr(
        trainer, "cache", Stage1Cache(tuple(jnp.full_like(f, jnp.nan) for f in c.features), c.labels, c.teacher)
    )
    rec, es = _run(trainer, early_stop_enabled=True)
    assert rec["stage"] == 1 and rec["reward"] == 0.0 and rec["stage1_reward"] is None
    assert "stage 1: non-finite loss" in rec["failure"]
    assert int(es["n_steps"]) == 1  # the early-stop rule still saw the candidate, with reward 0


def test_out_of_memory_while_running_stage1(trainer, monkeypatch):
    monkeypatch.setattr(trainer.compiled, "stage1", lambda genotype: (_oom, 0.0))
    rec, _ = _run(trainer)
    assert rec["stage"] == 1 and rec["reward"] == 0.0
    assert rec["failure"].startswith("out of memory in stage 1") and "RESOURCE_EXHAUSTED" in rec["failure"]


# Other ops, other wiring, cells at other levels than TINY: everything a per-genotype program would bake in.
OTHER = G.parse([[1, [1, 0, 2, 3], [2, 3, 5, 6], [4, 7, 7, 8]], [[1, 2], [4, 0], [5, 3]]])
LOWERING = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # every new program is lowered, cache or not
COMPILING = "/jax/core/compile/backend_compile_duration"


def test_a_second_genotype_reuses_the_compiled_programs(trainer):
    """Universal programs: after one genotype's stage 1, evaluation and stage 2, another genotype lowers
    and compiles nothing at all (counted with ``jax.monitoring``, which sees the ahead-of-time compiles and the
    persistent cache's loads alike) and the trainer's table still holds three programs."""
    assert trainer.compiled.programs.key(TINY) == "universal"  # what 'auto' (the default) picks for a tiny stage 1
    trainer.stage2(TINY, trainer.stage1(TINY, jax.random.PRNGKey(0)))  # warm (no-op if done already)
    events = []

    def listen(event, duration, **kwargs):
        if event in (LOWERING, COMPILING):
            events.append((event, kwargs.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        r1 = trainer.stage1(OTHER, jax.random.PRNGKey(1))
        r2 = trainer.stage2(OTHER, r1)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert events == [], events
    assert sorted(k[1] for k in trainer.compiled._compiled) == ["eval", "stage1", "stage2"]
    assert r1.seconds["compile"] < 0.01 and r2.seconds["compile"] < 0.01

"""``candidate.precision`` (`fdn.candidate.precision`): the setting refused, bfloat16 programs on float32 master
weights, the float32 programs untouched; the rank correlation and the flags of ``fdn.bench precision``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn.bench import __main__ as bench_main
from fdn.bench import _rank
from fdn.bench import precision as bench
from fdn.candidate import CandidateTrainer, steps
from fdn.candidate import precision as P
from fdn.candidate.programs import OrdinaryPrograms, UniversalPrograms, make_programs
from fdn.errors import UserError
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.search import settings
from tests import test_candidate
from tests.test_candidate import TINY, _tiny_config

SETTINGS = DecoderSettings(3, 8, 1, True)


# ------------------------------------------------------------------------------------------ the setting
def test_default_is_float32_and_other_values_are_refused_in_one_line():
    assert _tiny_config().precision == "float32"
    with pytest.raises(P.PrecisionError) as err:
        P.check("float16")
    assert isinstance(err.value, UserError)
    line = str(err.value)
    assert "\n" not in line and "candidate.precision" in line and "'bfloat16'" in line and "'float16'" in line
    with pytest.raises(P.PrecisionError):
        make_programs("universal", SETTINGS, precision="bf16")


def test_workdirs_from_before_the_setting_resume_at_float32():
    """A checkpoint without ``candidate.precision`` (with or without the earlier-added ``task``) resumes with
    'float32' and only with it (`fdn.search.settings.ADDED_KEYS`)."""
    before_task = settings.flatten({"seed": 3, "candidate": {"lr": 0.1}})
    before_precision = dict(before_task, task="segmentation")
    now = dict(before_precision, **{"candidate.precision": "float32"})
    for old in (before_task, before_precision, now):
        settings.check_same(old, settings.fingerprint(old), now, "w")
    with pytest.raises(settings.SettingsMismatch, match=r'candidate\.precision \("<unset>" -> "bfloat16"\)'):
        settings.check_same(
            before_precision,
            settings.fingerprint(before_precision),
            dict(now, **{"candidate.precision": "bfloat16"}),
            "w",
        )


def test_float32_programs_are_the_plain_ones():
    """float32 wraps nothing (the programs, hence the compiled code, are what they were); bfloat16 wraps the
    predict functions only: keys and plans are the inner program's."""
    assert type(make_programs("universal", SETTINGS)) is UniversalPrograms
    assert type(make_programs("per_genotype", SETTINGS, precision="float32")) is OrdinaryPrograms
    mixed = make_programs("universal", SETTINGS, precision="bfloat16")
    assert isinstance(mixed, P.MixedPrecision) and mixed.universal and mixed.key(TINY) == "universal"


# ------------------------------------------------------------------------------------------ tiny trainers
@pytest.fixture(scope="module")
def tiny_parts():
    return test_candidate.tiny_parts()


def _trainer(parts, precision=None):
    """A per-genotype tiny trainer (the fastest compiles); ``precision`` None: the field absent (older configs)."""
    enc_vars, cache, train, val = parts
    c = _tiny_config()
    c.programs = "per_genotype"
    c.stage1.epochs = 1
    if precision is None:
        del c.precision
    else:
        c.precision = precision
    return CandidateTrainer(c, 3, enc_vars, cache, lambda: iter(train), val)


def test_bad_precision_is_refused_by_the_trainer(tiny_parts):
    with pytest.raises(P.PrecisionError, match="candidate.precision"):
        _trainer(tiny_parts, "half")


def _dtypes(tree):
    return {str(a.dtype) for a in jax.tree.leaves(tree)}


def test_universal_bfloat16_step_traces_with_float32_gradients(tiny_parts):
    """The universal decoder in bfloat16 (traced only: its compile is the slowest): every switch and scan carry
    keeps one dtype, and the loss, the gradients and the new BN statistics come back float32."""
    _, cache, _, _ = tiny_parts
    programs = make_programs("universal", SETTINGS, precision="bfloat16")
    abstract = programs.abstract(TINY, [f.shape for f in cache.features])
    predict, plan, cfg = programs.stage1_predict(TINY), programs.plan(TINY), _tiny_config().stage1
    grad_fn = jax.value_and_grad(steps.stage1_loss, argnums=1, has_aux=True)
    (loss, (_, stats)), grads = jax.eval_shape(
        lambda p, s, f, y, t: grad_fn(predict, p, s, f, y, t, plan, cfg),
        abstract[N.PARAMS],
        abstract[N.BATCH_STATS],
        [f[:4] for f in cache.features],
        cache.labels[:4],
        cache.teacher[:4],
    )
    assert loss.dtype == jnp.float32 and _dtypes(grads) == {"float32"} and _dtypes(stats) == {"float32"}


@pytest.mark.slow
def test_bfloat16_trains_on_float32_master_weights(tiny_parts):
    trainer = _trainer(tiny_parts, "bfloat16")
    r1 = trainer.stage1(TINY, jax.random.PRNGKey(0))
    assert math.isfinite(r1.reward) and 0.0 <= r1.reward <= 1.0
    assert _dtypes(r1.decoder_program_variables) == {"float32"}  # params and BN statistics
    (exe, _), (eval_exe, _) = trainer.compiled.stage1(TINY), trainer.compiled.eval(TINY)
    assert "bf16" in exe.as_text() and "bf16" in eval_exe.as_text()  # the arithmetic is bfloat16
    r2 = trainer.stage2(TINY, r1)
    assert math.isfinite(r2.reward) and 0.0 <= r2.reward <= 1.0
    assert _dtypes(r2.variables[N.PARAMS]) == {"float32"} and _dtypes(r2.variables[N.BATCH_STATS]) == {"float32"}
    assert "bf16" in trainer.compiled.stage2(TINY)[0].as_text()


@pytest.mark.slow
def test_float32_reward_is_unchanged(tiny_parts):
    """'float32' and a config without the field give bitwise the same stage-1 result, in float32 code."""
    absent, f32 = _trainer(tiny_parts), _trainer(tiny_parts, "float32")
    a, b = absent.stage1(TINY, jax.random.PRNGKey(0)), f32.stage1(TINY, jax.random.PRNGKey(0))
    assert a.reward == b.reward
    for x, y in zip(jax.tree.leaves(a.decoder_program_variables), jax.tree.leaves(b.decoder_program_variables)):
        np.testing.assert_array_equal(x, y)
    assert "bf16" not in f32.compiled.stage1(TINY)[0].as_text()


# ------------------------------------------------------------------------------------------ rank correlation
def test_ranks_average_ties():
    assert _rank.ranks([5, 1, 5]).tolist() == [1.5, 0.0, 1.5]
    assert _rank.ranks([3.0, 1.0, 2.0]).tolist() == [2.0, 0.0, 1.0]


def test_spearman_known_values():
    assert _rank.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert _rank.spearman([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    assert _rank.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 - 6 * 4 / (5 * 24)
    assert _rank.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))  # tie averaged: SciPy's value
    assert math.isnan(_rank.spearman([1, 1, 1], [1, 2, 3]))  # no order to compare
    assert _rank.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])


def test_summary_leaves_failures_out():
    def row(f32, bf16):
        cell = lambda r: {"reward": r, "seconds": 1.0} if r is not None else {"reward": None, "failure": "x"}  # noqa: E731
        return {"genotype": "g", "float32": cell(f32), "bfloat16": cell(bf16)}

    s = bench.summary([row(0.1, 0.11), row(0.2, 0.19), row(0.3, None), row(0.4, 0.42)])
    assert (s["scored"], s["failed"]) == (3, 1)
    assert s["spearman"] == pytest.approx(1.0) and s["switch_default"]
    assert not bench.summary([row(0.1, 0.3), row(0.2, 0.2), row(0.3, 0.1)])["switch_default"]


# ------------------------------------------------------------------------------------------ flags
@pytest.fixture(autouse=True)
def _fresh_flags():
    yield
    bench.FLAGS.unparse_flags()


def test_flag_defaults_and_values():
    bench.FLAGS(["fdn.bench precision"])
    f = bench.FLAGS
    assert (f.preset, f.genotypes, f.seed, f.steps_scale, f.max_stage) == ("demo", 20, 0, 1.0, "2")
    bench.FLAGS.unparse_flags()
    bench.FLAGS(["fdn.bench precision", "--genotypes=5", "--max_stage=1", "--steps_scale=0.5", "--seed=3"])
    assert (f.genotypes, f.max_stage, f.steps_scale, f.seed) == (5, "1", 0.5, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--genotypes=2"], "--genotypes"),
        (["--max_stage=3"], "max_stage"),
        (["--steps_scale=0"], "--steps_scale"),
        (["--preset=voc"], "preset"),
        (["--genotypes=many"], "genotypes"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message, capsys):
    assert bench_main.main(["fdn.bench", "precision", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fdn.bench precision: error:") and message in err[0]


def test_the_search_refuses_a_bad_precision_before_any_work(tmp_path):
    from configs import voc
    from fdn.search import setup as setup_lib

    config = voc.get_config("tiny")
    config.data.data_dir = str(tmp_path / "data")
    config.candidate.programs = "per_genotype"  # no trainer before the teacher: only the settings check can say it
    config.candidate.precision = "half"
    with pytest.raises(UserError, match="candidate.precision must be one of 'float32', 'bfloat16', got 'half'"):
        setup_lib.build(config, tmp_path / "w")
    assert not (tmp_path / "data").exists() and not (tmp_path / "w").exists()

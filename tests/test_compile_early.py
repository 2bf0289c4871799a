"""The search compiles its universal programs during set-up, from shapes alone, in a thread beside the teacher
(`fdn.search.setup.compile_early`, `fdn.candidate.trainer.CandidateTrainer.compile_early`): the first
candidate then finds them compiled. Runs ``configs/voc.py:tiny`` with the real trainer on a miniature VOC tree."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import voc
from fdn import genotype as G
from fdn.candidate import CandidateTrainer
from fdn.candidate.cache import abstract_stage1_cache
from fdn.search import setup as setup_lib
from tests.data import trees

XLA_CACHE = Path(os.environ.get("FDN_TEST_XLA_CACHE", "/tmp/fdn_test_xla_cache"))
NUM_CLASSES = 21


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory):
    """A prepared miniature voc_sbd (`tests.data.trees.prepared_voc_sbd`)."""
    return trees.prepared_voc_sbd(tmp_path_factory.mktemp("voc"))


def _config(voc_dir, tmp_path, teacher_logits: bool):
    c = voc.get_config("tiny")
    c.data.data_dir = str(voc_dir)
    c.candidate.compilation_cache_dir = str(XLA_CACHE)
    c.max_stage = 1  # stage 1 and evaluation only: the stage-2 program of a whole segmenter compiles for minutes
    if teacher_logits:  # a teacher of stored logits, at another resolution than l1 (the cache resizes them)
        n = c.candidate.stage1.num_examples
        path = tmp_path / "teacher.npy"
        np.save(path, np.random.default_rng(1).normal(size=(n, 5, 5, NUM_CLASSES)).astype(np.float32))
        c.teacher.kind, c.teacher.path = "logits", str(path)
    return c


@pytest.mark.parametrize("teacher_logits", [False, True], ids=["no_teacher", "teacher_logits"])
def test_the_first_candidate_finds_its_programs_compiled_during_set_up(voc_dir, tmp_path, teacher_logits):
    lines = []
    setup = setup_lib.build(_config(voc_dir, tmp_path, teacher_logits), tmp_path / "w", log=lines.append)
    try:
        assert setup.early_compile is not None
        seconds = setup.early_compile.wait()
        assert set(seconds) == {"stage1", "eval"}  # max_stage=1: no stage-2 program
        assert not any("do not fit" in line for line in lines), lines
        assert {stage for _, stage in setup.trainer.compiled_programs()} == {"stage1", "eval"}
        result = setup.trainer.stage1(G.parse("arch1"), jax.random.PRNGKey(0))  # another genotype: one program
        assert result.seconds["compile"] < 0.5 and 0.0 <= result.reward <= 1.0
    finally:
        setup.close()


def test_abstract_cache_has_the_real_caches_shapes(voc_dir, tmp_path):
    config = _config(voc_dir, tmp_path, teacher_logits=True)
    config.candidate.stage1.feature_dtype = "bfloat16"
    config.compile_during_setup = False
    setup = setup_lib.build(config, tmp_path / "w", log=lambda *a: None)
    assert setup.early_compile is None and not setup.trainer.compiled_programs()
    cache = setup.trainer.cache
    cc = config.candidate
    encoder = setup_lib.make_encoder_apply(config)
    abstract = abstract_stage1_cache(
        encoder,
        setup.trainer.encoder_variables,
        cc.stage1.num_examples,
        cc.stage1.crop_size,
        NUM_CLASSES,
        with_teacher=True,
        feature_dtype=cc.stage1.feature_dtype,
    )

    def shapes(c):
        return [(x.shape, x.dtype) for x in (*c.features, c.labels, c.teacher)]

    assert shapes(abstract) == shapes(cache) and abstract.task == cache.task
    # a table built for other shapes is not taken over
    other = abstract_stage1_cache(
        encoder, setup.trainer.encoder_variables, cc.stage1.num_examples + 1, cc.stage1.crop_size, NUM_CLASSES,
        with_teacher=True, feature_dtype=cc.stage1.feature_dtype,
    )  # fmt: skip
    trainer = setup.trainer
    for table_cache, adopted in ((other, False), (abstract, True)):
        early = CandidateTrainer.compile_early(
            trainer.config, NUM_CLASSES, trainer.encoder_variables, table_cache, trainer._val, "arch0",
            expand_first_block=config.encoder.expand_first_block, stages=(),
        )  # fmt: skip
        early.wait()
        assert trainer.adopt_programs(early.table) is adopted

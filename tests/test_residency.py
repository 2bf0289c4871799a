"""A trainer keeps the compiled programs of its last few genotypes only (`fdn.candidate.residency`): with
per-genotype programs on a CPU every genotype's executables hold thousands of memory mappings, and a search that
kept them all crashed inside LLVM after ~10 genotypes (Linux's ``vm.max_map_count``)."""

import os

import jax
import pytest

from fdn import genotype as G
from fdn.candidate import CandidateTrainer, residency
from tests.test_candidate import _tiny_config, tiny_parts

GENOTYPES = ("arch0", "arch1", "arch2")


def test_recency_lets_go_of_the_least_recently_used_keys_that_are_not_busy():
    r = residency.Recency(2)
    assert r.touch("a", lambda k: False) == [] and r.touch("b", lambda k: False) == []
    assert r.touch("a", lambda k: False) == []  # a is now the most recent
    assert r.touch("c", lambda k: False) == ["b"]
    assert "a" in r and "c" in r and len(r) == 2
    assert r.touch("d", lambda k: k == "a") == ["c"]  # a is busy (a compile in flight): kept, c goes instead
    assert r.touch("e", lambda k: True) == [] and len(r) == 3  # all busy: over capacity for a while
    assert r.touch("e", lambda k: False) == ["a"] and len(r) == 2


def test_capacity_is_at_least_one_and_smaller_on_a_cpu(per_genotype_trainer):
    with pytest.raises(ValueError, match="at least 1"):
        residency.Recency(0)
    assert 1 <= residency.capacity("cpu") < residency.capacity("gpu") == residency.capacity("tpu")
    # the trainer's table is bound by its own platform's capacity
    platform = jax.devices()[0].platform
    assert per_genotype_trainer.compiled._recency.capacity == residency.capacity(platform)


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.fixture(scope="module")
def per_genotype_trainer():
    enc_vars, cache, train, val = tiny_parts()
    config = _tiny_config()
    config.programs = "per_genotype"
    return CandidateTrainer(config, 3, enc_vars, cache, lambda: iter(train), val)


def test_a_trainer_drops_the_oldest_genotypes_programs_and_their_memory_maps(per_genotype_trainer, monkeypatch):
    table = per_genotype_trainer.compiled
    monkeypatch.setattr(table, "_recency", residency.Recency(1))
    linux = os.path.exists("/proc/self/maps")
    maps = []
    for name in GENOTYPES:
        per_genotype_trainer.precompile(name, ("stage1",))
        assert {key for key, _ in per_genotype_trainer.compiled_programs()} == {table.programs.key(G.parse(name))}
        maps.append(_maps() if linux else 0)
    if linux:  # a stage-1 program maps ~700 kernels, ~2,000 mappings: kept, two more genotypes would add ~4,000
        assert maps[2] - maps[0] < 1000, maps
    # a genotype dropped and met again compiles again, and its stage runs
    result = per_genotype_trainer.stage1(GENOTYPES[0], jax.random.PRNGKey(0))
    assert result.seconds["compile"] > 0.1 and 0.0 <= result.reward <= 1.0

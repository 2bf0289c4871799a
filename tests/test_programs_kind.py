"""``candidate.programs='auto'``: which decoder programs a candidate compiles, chosen where they will run
(``fdn.candidate.programs.resolve_kind``), and recorded concretely by the search."""

import pytest

from configs import demo
from fdn.candidate import default_config
from fdn.candidate import programs as P
from fdn.search import settings as S
from fdn.search import setup as setup_lib


def _kind(stage1, platform):
    return P.resolve_kind(P.AUTO, P.config_stage1_work(stage1), platform)


def test_auto_compiles_per_genotype_on_a_cpu_for_the_papers_stage1_only():
    assert default_config().programs == P.AUTO
    paper, demo_stage1 = default_config().stage1, demo.get_config("").candidate.stage1
    assert P.config_stage1_work(paper) == 4000 * 5 * 256**2
    assert _kind(paper, "cpu") == P.PER_GENOTYPE
    assert _kind(demo_stage1, "cpu") == P.UNIVERSAL  # the demo's compiles would cost more than its steps save
    assert _kind(paper, "gpu") == P.UNIVERSAL and _kind(paper, "tpu") == P.UNIVERSAL


def test_explicit_kinds_are_kept_and_others_refused_in_one_line():
    for kind in (P.UNIVERSAL, P.PER_GENOTYPE):
        assert P.resolve_kind(kind, 1e12, "cpu") == kind and P.resolve_kind(kind, 0, "gpu") == kind
    with pytest.raises(P.ProgramsError, match="candidate.programs must be one of 'auto', 'universal', 'per_genotype'"):
        P.resolve_kind("per-genotype", 0, "cpu")


def test_the_search_records_the_programs_it_resolved(monkeypatch):
    """The settings a workdir stores name the programs that ran: a demo workdir from before 'auto' existed (it said
    'universal') resumes; a paper-setting search on a CPU says 'per_genotype' and logs why."""
    monkeypatch.setattr(setup_lib.jax, "default_backend", lambda: "cpu")
    lines = []
    config = demo.get_config("")
    before = S.result_settings(config) | {"candidate.programs": P.UNIVERSAL}
    setup_lib.resolve_programs(config, None, lines.append)
    assert config.candidate.programs == P.UNIVERSAL and S.fingerprint(config) == S.fingerprint(before)
    assert lines[-1].startswith("search: candidate.programs=auto -> universal on cpu (stage 1: 2.4e+06 pixel-examples")
    config.candidate.programs, config.candidate.stage1 = P.AUTO, default_config().stage1
    setup_lib.resolve_programs(config, None, lines.append)
    assert config.candidate.programs == P.PER_GENOTYPE
    assert lines[-1:] == [
        "search: candidate.programs=auto -> per_genotype on cpu (stage 1: 1.3e+09 pixel-examples per candidate; "
        "fdn.candidate.programs)"
    ]


def test_a_misspelled_programs_setting_is_one_line_before_any_work(tmp_path):
    config = demo.get_config("")
    config.candidate.programs = "universel"
    with pytest.raises(P.ProgramsError, match="got 'universel'"):
        setup_lib.build(config, tmp_path / "w")
    assert not (tmp_path / "w").exists()  # refused before the data or the workdir

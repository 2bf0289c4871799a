"""``python -m fdn.bench``: the dispatcher's usage line, an unknown bench in one line, and ``WHAT --help`` for every
bench (its docstring and flags, exit 0) instead of absl's "Unknown command line flag 'help'"."""

import importlib

import pytest

from fdn.bench import __main__ as bench_main

BENCHES = bench_main._available()


def test_usage_and_unknown_bench(capsys):
    assert bench_main.main(["fdn.bench"]) == 2
    assert "usage: python -m fdn.bench {" in capsys.readouterr().out
    assert bench_main.main(["fdn.bench", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown benchmark 'nonsense'" in err[0] and "coldstart" in err[0]


@pytest.mark.parametrize("what", BENCHES)
def test_help_prints_the_docstring_and_flags(what, capsys):
    assert bench_main.main(["fdn.bench", what, "--help"]) == 0
    out = capsys.readouterr().out
    doc = importlib.import_module(f"fdn.bench.{what}").__doc__.strip()
    assert out.startswith(f"python -m fdn.bench {what} [flags]\n\n{doc.splitlines()[0]}")
    assert "\nflags:\n" in out and "(default:" in out


def test_help_wins_over_other_flags(capsys):
    assert bench_main.main(["fdn.bench", "coldstart", "--warm_candidates=-1", "-h"]) == 0
    assert "--warm_candidates" in capsys.readouterr().out

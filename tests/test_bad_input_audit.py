"""Bad input found by an audit of every command: each is one line on stderr naming the problem and what to do,
exit code 2, no traceback, nothing computed lost (`fdn.errors`, `fdn.cli`).

Commands run as subprocesses where absl's own handling is what is checked (usage errors, flag bounds), in-process
where the fix is in a library function the commands share.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train_interrupts import error_line

ROOT = Path(__file__).resolve().parents[1]


def run(module, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(done: subprocess.CompletedProcess, command: str) -> str:
    """The error line of a command that failed on bad input (exit code 2, no traceback, one line)."""
    assert done.returncode == 2, done.stderr[-3000:]
    return error_line(done.stderr, command)


# ------------------------------------------------------------------------------------ positional arguments
@pytest.mark.parametrize(
    "module,args,fragment",
    [
        ("fdn.leaderboard", [], "usage: python -m fdn.leaderboard WORKDIR"),
        ("fdn.data.prepare", [], "usage: python -m fdn.data.prepare NAME"),
        ("fdn.evaluate", ["--checkpoint=/nonexistent", "extra"], "unexpected arguments ['extra']"),
        ("fdn.export", ["--checkpoint=/nonexistent", "--out=/nonexistent.x", "extra"], "unexpected arguments"),
    ],
)
def test_wrong_positional_arguments_are_one_line_exit_2(module, args, fragment):
    """absl answers a ``UsageError`` with the whole help text and exit code 1; fdn.export ignored extras."""
    line = one_line(run(module, *args), module)
    assert fragment in line

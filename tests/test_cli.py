"""Every command reports a bad flag or config setting in one line with exit code 2 (`fdn.cli`), no traceback."""

import subprocess
import sys

import pytest

from fdn import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)


def one_error_line(proc, command):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and lines[-1].startswith(f"{command}: error: "), proc.stderr
    return lines[-1]


@pytest.mark.parametrize("command", ["fdn.search", "fdn.train"])
def test_misspelled_config_key(command, tmp_path):
    config = "configs/demo.py:tiny" if command == "fdn.search" else "configs/demo_train.py:tiny"
    key = "--config.candidate.stage1.epochz=2" if command == "fdn.search" else "--config.optim.stage_epochz=2"
    line = one_error_line(run(command, f"--config={config}", f"--workdir={tmp_path}", key), command)
    assert key.split("=")[0] in line and "did you mean" in line


def test_bad_config_arg_and_missing_file(tmp_path):
    line = one_error_line(run("fdn.search", "--config=configs/demo.py:tinyy", f"--workdir={tmp_path}"), "fdn.search")
    assert "unknown config arg 'tinyy'" in line
    line = one_error_line(run("fdn.search", "--config=configs/nope.py", f"--workdir={tmp_path}"), "fdn.search")
    assert "configs/nope.py" in line


@pytest.mark.parametrize("command", ["fdn.predict", "fdn.evaluate", "fdn.export", "fdn.leaderboard"])
def test_unknown_flag(command):
    line = one_error_line(run(command, "--no_such_flag=1"), command)
    assert "no_such_flag" in line


def test_describe_bad_value():
    from absl import flags

    err = flags.IllegalFlagValueError("flag --config.num_candidates=abc: invalid literal for int()")
    assert cli.describe_flag_error(err, []).startswith("flag --config.num_candidates=abc: invalid literal")

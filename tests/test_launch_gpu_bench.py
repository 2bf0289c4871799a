"""``launch/gpu_bench.sh`` runs once, on a borrowed GPU with minutes to spare: every bench command in it must
parse (at the GPU sizes and at the smoke sizes), and its budget must end the run within the 8 minutes the
GPU session allows. Running it is ``FDN_GPU_BENCH_SMOKE=1 bash launch/gpu_bench.sh DIR`` (minutes, not here)."""

import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "launch" / "gpu_bench.sh"


def _arrays(text: str, name: str) -> list[list[str]]:
    """Every definition ``name=(...)`` in the script (smoke sizes first, then the GPU's), as argument lists."""
    return [shlex.split(body) for body in re.findall(rf"^\s*{name}=\((.*?)\)\s*$", text, re.M)]


def _bench_commands(text: str) -> list[tuple[str, int, list[str]]]:
    """(step name, time limit, the command's words) of every ``step`` line."""
    out = []
    for line in text.splitlines():
        if line.startswith("step "):
            words = shlex.split(line)
            out.append((words[1], int(words[2]), words[3:]))
    return out


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_budget_ends_the_run_inside_eight_minutes():
    text = SCRIPT.read_text()
    budget = int(re.search(r"FDN_GPU_BENCH_BUDGET:-(\d+)", text).group(1))
    steps = _bench_commands(text)
    assert budget <= 480 - 10  # the set-up before the first step takes seconds
    assert steps[0][0] == "search_paper" and steps[0][1] <= budget  # the acceptance figure always runs
    assert len({name for name, _, _ in steps}) == len(steps)


@pytest.mark.parametrize("sizes", [0, 1], ids=["smoke", "gpu"])
def test_every_bench_command_parses(sizes):
    text = SCRIPT.read_text()
    arrays = {name: _arrays(text, name) for name in ("preset", "stage1")}
    assert all(len(v) == 2 for v in arrays.values())
    for name, _, words in _bench_commands(text):
        words = [w for w in words if not re.match(r"^[A-Z_]+=", w) and w != "env"]
        assert words[:3] == ["python3", "-m", "fdn.bench"], name
        what, args = words[3], []
        for w in words[4:]:
            m = re.fullmatch(r"\$\{(\w+)\[@\]\}", w)
            args += arrays[m.group(1)][sizes] if m else [w]
        module = importlib.import_module(f"fdn.bench.{what}")
        try:
            module.FLAGS([f"fdn.bench {what}", *args])
        finally:
            module.FLAGS.unparse_flags()

"""The leaderboard: de-duplication, summary figures, the report files and the genotype drawings."""

import json

import pytest

from fdn import genotype as gt
from fdn.search import leaderboard, run_log
from fdn.search.drawing import draw_genotype


def record(index, genotype, reward, stopped=False, failure=None, compile_s=1.0, total=4.0):
    g = gt.parse(genotype)
    return {
        "index": index,
        "genotype": g.to_list(),
        "hash": g.short_hash,
        "reward": reward,
        "stage1_reward": reward,
        "miou": reward,
        "macc": reward,
        "fwiou": reward,
        "params": 2000 + index,
        "params_without_aux": 1500 + index,
        "stage": 1 if stopped else 2,
        "stopped_early": stopped,
        "failure": failure,
        "controller_step": index + 1,
        "entropy": 35.0 - 0.1 * index,
        "early_stop_threshold": 0.01 + 0.001 * index,
        "seconds": {"compile": compile_s, "stage1": 1.0, "stage2": 1.0, "eval": 0.5, "total": total},
    }


@pytest.fixture
def workdir(tmp_path):
    log = run_log.RunLog(tmp_path)
    rows = [
        ("arch0", 0.30),
        ("arch1", 0.50),
        ("arch0", 0.40),
        ("arch2", 0.10),
        ("arch1", 0.45),
        ("arch2", 0.0),
        ("arch0", 0.35),
        ("arch1", 0.55),
    ]
    for i, (name, reward) in enumerate(rows):
        log.append(record(i, name, reward, stopped=(i == 3), failure="boom" if i == 5 else None))
    log.close()
    return tmp_path


def test_unique_genotypes_best_first(workdir):
    rows = leaderboard.unique_genotypes(run_log.read(workdir))
    assert [r["hash"] for r in rows] == [gt.ARCH1.short_hash, gt.ARCH0.short_hash, gt.ARCH2.short_hash]
    assert [r["seen"] for r in rows] == [3, 3, 2]
    assert rows[0]["best"] == 0.55 and rows[0]["mean"] == pytest.approx(0.5)


def test_summary_compile_share_and_quarters(workdir):
    s = leaderboard.summary(run_log.read(workdir))
    assert s["candidates"] == 8 and s["unique"] == 3 and s["stopped_early"] == 1 and s["failed"] == 1
    assert s["compile_share"] == pytest.approx(0.25)
    assert s["first_quarter_mean"] == pytest.approx(0.4) and s["last_quarter_mean"] == pytest.approx(0.45)


def test_report_files_and_cli(workdir, capsys):
    assert leaderboard.report_command(str(workdir), top_k=2) == 0
    out = capsys.readouterr().out
    ranks = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "hash" not in line]
    assert "compile 25.0%" in out and ranks == ["1", "2"]
    report = workdir / leaderboard.REPORT_DIR
    for name in ("leaderboard.md", "rewards.png", "reward_vs_params.png", "entropy.png", "pareto.png", "time.png"):
        assert (report / name).stat().st_size > 0
    assert len(list(report.glob("top*_*.png"))) == 3 and len(list(report.glob("top*_*.svg"))) == 3
    # refreshing (as the search does during a run) replaces the drawings instead of piling them up
    leaderboard.write_report(workdir)
    assert len(list(report.glob("top1_*"))) == 2


def test_torn_last_line_is_ignored(workdir):
    with open(workdir / run_log.FILENAME, "ab") as f:
        f.write(b'{"index": 8, "rew')
    assert len(run_log.read(workdir)) == 8


def test_missing_log_is_an_error(tmp_path, capsys):
    assert leaderboard.report_command(str(tmp_path)) == 2


@pytest.mark.parametrize("name", ["arch0", "arch1", "arch2"])
def test_drawings(tmp_path, name):
    png, svg = draw_genotype(gt.released(name), tmp_path / name)
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:500]


def test_nan_is_written_as_null(tmp_path):
    log = run_log.RunLog(tmp_path)
    log.append({"index": 0, "reward": float("nan")})
    log.close()
    assert json.loads((tmp_path / run_log.FILENAME).read_text())["reward"] is None


def test_compare_runs_table_and_plot(workdir, tmp_path_factory, capsys):
    other = tmp_path_factory.mktemp("random")
    (other / "config.json").write_text(json.dumps({"agent": "random"}))
    log = run_log.RunLog(other)
    for i, reward in enumerate([0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1, 0.2]):
        log.append(record(i, "arch2", reward))
    log.close()
    assert leaderboard.report_command(str(workdir), compare=[str(other)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if " @ " in line}
    assert set(rows) == {f"? @ {workdir.name}", f"random @ {other.name}"}
    cells = [c.strip() for c in rows[f"random @ {other.name}"].split("|")[2:-1]]
    assert cells == ["8", "0.1500", "0.1500", "0.1500", "0.1500", "0.1500", "0.2000"]
    cells = [c.strip() for c in rows[f"? @ {workdir.name}"].split("|")[2:-1]]
    assert cells[1:5] == ["0.4000", "0.2500", "0.2250", "0.4500"]
    assert (workdir / leaderboard.REPORT_DIR / "compare.png").stat().st_size > 0
    assert leaderboard.report_command(str(workdir), compare=[str(tmp_path_factory.mktemp("empty"))]) == 2


def test_command_line(workdir, tmp_path_factory):
    """``python -m fdn.leaderboard`` (absl flags like every other command): table, comparison, clear errors."""
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "fdn.leaderboard", *map(str, args)], capture_output=True, text=True, timeout=120
        )

    ok = run(workdir, "--top_k=2", f"--compare={workdir}", "--html")
    assert ok.returncode == 0, ok.stderr
    assert "| 1 |" in ok.stdout and "| 3 |" not in ok.stdout.split("\n\n")[0]
    assert (workdir / leaderboard.REPORT_DIR / "compare.png").stat().st_size > 0
    assert "page: file://" in ok.stdout and (workdir / leaderboard.REPORT_DIR / "index.html").stat().st_size > 0
    missing = run(tmp_path_factory.mktemp("empty"))
    assert missing.returncode == 2 and "fdn.leaderboard: error: no candidates.jsonl" in missing.stderr
    typo = run(workdir, "--top_kk=2")
    assert typo.returncode != 0 and "top_kk" in typo.stderr


def test_compare_against_a_latency_budget(workdir, tmp_path_factory, capsys):
    """A budgeted run beside a quality-only one: each run's quarters against the target, the quality-only run
    priced by the budgeted run's latency model (every piece 1 ms: arch1 81 ms, arch0 88, arch2 87; target 85)."""
    from fdn.latency import parts
    from fdn.latency import table as latency_table

    budgeted = tmp_path_factory.mktemp("latency")
    (budgeted / "config.json").write_text(json.dumps({"agent": "ppo"}))
    log = run_log.RunLog(budgeted)
    for i in range(4):  # its own logged measure (10 ms) is used as it is, not re-priced
        log.append(
            {
                **record(i, "arch1", 0.2),
                "quality": 0.25,
                "measure": {"name": "latency_ms", "value": 10.0, "target": 85.0},
            }
        )
    log.close()
    model = latency_table.LatencyModel(
        {}, {latency_table.key_str(k): 1.0 for k in parts.all_keys()}, {"fit": "linear", "a": 0.0, "b": 1.0}, []
    )
    (budgeted / latency_table.MODEL_FILENAME).write_text(model.to_json())

    def rows():
        assert leaderboard.report_command(str(budgeted), compare=[str(workdir)]) == 0
        out = capsys.readouterr().out
        assert "budget: latency_ms <= 85" in out
        table = out.split("budget: ")[1].splitlines()[3:]
        cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table if line.startswith("| ")]
        return {(c[0].split(" @ ")[1], c[1]): c[2:] for c in cells}

    got = rows()
    q = workdir.name  # arch0 .30, arch1 .50 | arch0 .40, arch2 .10 | arch1 .45, arch2 0 (failed) | arch0 .35, arch1 .55
    assert got[(q, "Q1")] == ["2", "0.4000", "84.5", "84.5", "1 (50%)", "0.5000"]
    assert got[(q, "Q2")][4:] == ["0 (0%)", "-"]
    assert got[(q, "Q4")][4:] == ["1 (50%)", "0.5500"]
    assert got[(q, "all")] == ["8", "0.3313", "85.1", "87", "3 (38%)", "0.5500"]
    assert got[(budgeted.name, "Q4")] == ["1", "0.2500", "10", "10", "1 (100%)", "0.2500"]
    assert (budgeted / leaderboard.REPORT_DIR / "budget.png").stat().st_size > 0

    (budgeted / latency_table.MODEL_FILENAME).unlink()  # no model: the quality-only run cannot be priced
    got = rows()
    assert got[(q, "Q1")] == ["2", "0.4000", "-", "-", "-", "-"]
    assert got[(budgeted.name, "all")][4] == "4 (100%)"

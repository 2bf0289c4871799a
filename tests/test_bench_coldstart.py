"""``python -m fdn.bench coldstart``: the child runner (stamped lines, stop, time limit, CPU), the set-up events,
the warm summary, issue #12's bars, bad flags in one line, and (slow) a tiny cold start and warm rerun end to end."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fdn.bench import __main__ as bench_main
from fdn.bench import _child
from fdn.bench import coldstart as cs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_flags():
    yield
    cs.FLAGS.unparse_flags()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# ------------------------------------------------------------------------------------------ the child runner
def test_child_lines_are_stamped_in_order_and_progress_updates_kept():
    seen = []
    run = _child.run(
        _python(
            """
            import sys, time
            print("one", flush=True)
            time.sleep(0.3)
            for p in (1, 50, 100):  # a progress bar: redraws without a newline until it closes
                sys.stderr.write(f"\\rbar {p}%"); sys.stderr.flush(); time.sleep(0.1)
            sys.stderr.write("\\n"); sys.stderr.flush()
            print("two", flush=True)
            sys.stdout.write("no newline at the end")
            """
        ),
        echo=lambda t, line: seen.append(line),
    )
    texts = [line for _, line in run.lines]
    assert texts == ["one", "bar 1%", "bar 50%", "bar 100%", "two", "no newline at the end"]
    stamps = [t for t, _ in run.lines]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] >= 0.25  # each piece stamped when it came
    assert seen == ["one", "bar 1%", "bar 100%", "two", "no newline at the end"]  # updates: the first, then 15 s apart
    assert run.returncode == 0 and run.stopped_at is None and not run.timed_out
    assert run.first("bar") == run.lines[1][0] and run.last("bar") == run.lines[3][0]
    assert run.first("absent") is None


def test_output_split_at_newlines_and_carriage_returns():
    pieces, rest = _child.split_output(b"a\nb\r\nc\rd\re")
    assert pieces == [("a", False), ("b", False), ("c", True), ("d", True)] and rest == b"e"
    assert _child.split_output(b"x\r") == ([], b"x\r")  # a CR at the end may be half of a CRLF
    assert _child.split_output(b"x\r\n") == ([("x", False)], b"")


def test_child_stops_with_sigterm_once_the_condition_holds(tmp_path):
    flag = tmp_path / "done"
    run = _child.run(
        _python(
            f"""
            import signal, time
            from pathlib import Path
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # as fdn.interrupts: SIGTERM stops like Ctrl-C
            x = 0
            for i in range(20_000_000):  # some CPU time before the file appears
                x += i
            Path({str(flag)!r}).write_text("x")
            print("written", flush=True)
            try:
                time.sleep(60)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                raise SystemExit(130)
            """
        ),
        stop_when=lambda: flag.is_file(),
    )
    assert run.stopped_at is not None and run.stopped_at < 30 and not run.timed_out
    assert run.returncode == 130 and [line for _, line in run.lines] == ["written", "interrupted"]
    assert run.cpu_seconds > 0.1  # the loop's CPU time, read before the stop
    assert run.wall_seconds >= run.stopped_at


def test_ctrl_c_in_the_bench_lets_the_child_finish_before_it_propagates(tmp_path, monkeypatch):
    started, finished = tmp_path / "started", tmp_path / "finished"
    monkeypatch.setattr(_child, "CTRL_C_WAIT_SECONDS", 0.3)  # no terminal here: the child sees only our SIGTERM

    def user_presses_ctrl_c():
        if started.is_file():
            raise KeyboardInterrupt
        return False

    code = f"""
        import signal, time
        from pathlib import Path
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        Path({str(started)!r}).write_text("x")
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            time.sleep(0.5)  # a record or checkpoint being written
            Path({str(finished)!r}).write_text("x")
        """
    with pytest.raises(KeyboardInterrupt):
        _child.run(_python(code), stop_when=user_presses_ctrl_c)
    assert finished.is_file()  # the child was stopped and waited for, so nothing it was writing is cut


def test_child_time_limit_stops_it(tmp_path):
    run = _child.run(_python("import time; time.sleep(60)"), timeout=0.5)
    assert run.timed_out and run.stopped_at is None and run.returncode != 0 and run.wall_seconds < 30


def test_a_child_of_a_background_job_is_stopped_too():
    """A shell starts background jobs (``cmd &``, nohup) with SIGINT ignored and children inherit that: the stop
    must not rely on SIGINT (with it, this child slept its whole minute)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = _child.run(_python("import time; time.sleep(60)"), timeout=0.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert run.timed_out and run.returncode != 0 and run.wall_seconds < 30


def test_busy_cores_from_proc_stat_samples():
    cpus = os.cpu_count()
    assert _child.busy_cores((100, 50), (300, 150)) == pytest.approx(cpus * 0.5)
    assert _child.busy_cores(None, (1, 1)) is None and _child.busy_cores((5, 1), (5, 1)) is None


# ------------------------------------------------------------------------------------------ reading a search's run
STARTED = 1_800_000_000.0  # the launch's wall-clock time in these canned runs


def _run(lines, wall=100.0, stopped_at=None, cpu=150.0):
    return _child.ChildRun(["x"], STARTED, lines, wall, 0, cpu, stopped_at=stopped_at, machine_busy_cores=1.9)


LOG = [
    (2.0, "search: candidate.programs=auto -> universal on cpu"),
    (12.3, "search: fdn_shapes/train: meta-train 1080, meta-val 96 images, 7 classes; stage 2: 8 steps per epoch"),
    (13.2, "search: compiling the candidates' programs in the background while the set-up goes on"),
    (21.0, "teacher: training [[8, ...]] at agg 64 for 1000 steps"),
    (78.2, "teacher: step 50/1000 loss 0.886 (54 s)"),
    (156.1, "teacher: step 1000/1000 loss 0.404 (132 s)"),
    (160.8, "search: stage-1 cache of 192 crops in 4.0 s with teacher logits"),
]


def test_set_up_events_read_from_the_search_log():
    events = cs.set_up_events(_run(LOG))
    assert events == {
        "data ready": 12.3,
        "background compile started": 13.2,
        "teacher started": 21.0,
        "teacher trained": 156.1,  # the last step line, not the first
        "stage-1 cache built": 160.8,
    }
    assert cs.set_up_events(_run(LOG[:3])) == {"data ready": 12.3, "background compile started": 13.2}


def test_cold_summary_places_records_by_their_own_time():
    record = {"genotype": [[0]], "reward": 0.1, "stage": 2, "seconds": {"compile": 3.0}, "time": STARTED + 167.84}
    cold = cs.cold_summary(_run(LOG, stopped_at=167.9), [record])
    assert cold["first_record_s"] == 167.8 and cold["first_candidate"]["reward"] == 0.1 and cold["candidates"] == 1
    assert cold["events_s"]["stage-1 cache built"] == 160.8 and cold["machine_busy_cores"] == 1.9
    assert cold["median_s_per_candidate"] is None  # one record: no gap
    more = [dict(record, time=STARTED + t) for t in (170.0, 167.84, 176.0, 173.5)]  # as read, not in time order
    cold = cs.cold_summary(_run(LOG, wall=181.0), more)
    assert (cold["first_record_s"], cold["last_record_s"], cold["candidates"]) == (167.8, 176.0, 4)
    assert cold["median_s_per_candidate"] == 2.5 and cold["wall_s"] == 181.0
    assert cs.cold_summary(_run(LOG, stopped_at=None), [])["first_record_s"] is None


def test_warm_summary_median_gap_and_compile_share():
    records = [{"time": STARTED + t, "seconds": {"compile": c}} for t, c in ((20, 5.5), (23, 0), (26.5, 0), (29, 0.5))]
    warm = cs.warm_summary(_run([], wall=200.0), records)
    assert warm["candidates"] == 4 and warm["median_s_per_candidate"] == 3.0  # gaps 3, 3.5, 2.5
    assert warm["compile_s"] == 6.0 and warm["compile_share"] == pytest.approx(0.03)
    assert cs.warm_summary(_run([], wall=10.0), [])["median_s_per_candidate"] is None


def test_bars_of_issue_12():
    warm = {"candidates": 40, "wall_s": 155.0, "compile_share": 0.035}
    assert cs.verdicts({"first_record_s": 167.8}, warm) == {
        "cold_first_record_within_180_s": True,
        "warm_40_within_600_s": True,
        "warm_compile_under_15_percent": True,
    }
    slow = cs.verdicts({"first_record_s": 181.0}, {"candidates": 40, "wall_s": 601.0, "compile_share": 0.2})
    assert not any(slow.values())
    unmeasured = cs.verdicts({"first_record_s": None}, {"candidates": 12, "wall_s": 50.0, "compile_share": 0.0})
    assert set(unmeasured.values()) == {None}  # fewer than 40 warm candidates: the warm bar is not judged


def test_read_records_skips_a_line_cut_by_the_stop(tmp_path):
    path = tmp_path / "candidates.jsonl"
    path.write_text('{"index": 0}\n{"index": 1}\n{"ind')
    assert cs.read_records(path) == [{"index": 0}, {"index": 1}] and cs.count_records(path) == 2
    assert cs.read_records(tmp_path / "missing.jsonl") == [] and cs.count_records(tmp_path / "missing.jsonl") == 0


def test_search_command_and_config_path(tmp_path):
    config = cs.resolve_config("configs/demo.py:tiny")
    assert config.endswith("configs/demo.py:tiny") and Path(config.split(":")[0]).is_absolute()
    command = cs.search_command(config, tmp_path / "wd", tmp_path / "xla", ["--config.seed=1"], candidates=40)
    assert command[1:3] == ["-m", "fdn.search"] and "--config.num_candidates=40" in command
    assert f"--config.candidate.compilation_cache_dir={tmp_path / 'xla'}" in command
    assert command[-1] == "--config.seed=1"  # extra flags last: they win over the bench's own


# ------------------------------------------------------------------------------------------ bad flags
@pytest.mark.parametrize(
    "args, message",
    [
        (["--warm_candidates=-1"], "--warm_candidates"),
        (["--cold_candidates=-2"], "--cold_candidates"),
        (["--cold_timeout=0"], "--cold_timeout"),
        (["--config=configs/nope.py"], "configs/nope.py"),
        (["--warm_candidates=many"], "warm_candidates"),
    ],
)
def test_unusable_flags_exit_2_with_one_line(args, message, capsys):
    assert bench_main.main(["fdn.bench", "coldstart", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fdn.bench coldstart: error:") and message in err[0]


def test_a_used_root_is_refused(tmp_path, capsys):
    (tmp_path / "old").write_text("x")
    assert bench_main.main(["fdn.bench", "coldstart", f"--root={tmp_path}"]) == 2
    assert "not an empty folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_cold_start_and_warm_rerun(tmp_path):
    """The tiny demo config: a cold search stopped at its second record, then a warm rerun of 2 candidates that
    reuses its data and XLA cache (~1.5 min on 2 cores)."""
    root = tmp_path / "root"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fdn.bench",
            "coldstart",
            "--config=configs/demo.py:tiny",
            "--cold_candidates=2",
            "--warm_candidates=2",
            f"--root={root}",
            "--keep",
            "--echo=false",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=1200,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cold, warm = result["cold"], result["warm"]
    assert cold["first_record_s"] > cold["events_s"]["stage-1 cache built"] > cold["events_s"]["data ready"] > 0
    assert cold["first_candidate"]["stage"] in (1, 2) and cold["cpu_s"] > 0
    assert cold["candidates"] >= 2 and cold["last_record_s"] >= cold["first_record_s"]
    assert len(cs.read_records(root / "cold" / cs.RECORDS)) == cold["candidates"]
    assert warm["candidates"] == 2 and warm["returncode"] == 0
    assert (root / "warm" / "data").is_dir() and any((root / "xla").iterdir())  # reused data, a filled XLA cache
    assert result["bars"]["warm_40_within_600_s"] is None  # 2 candidates: the 40-candidate bar is not judged

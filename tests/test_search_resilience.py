"""What a long search meets: SIGTERM, a run of failures, a resume with other settings, a damaged log or
checkpoint, and a stage-2 step count derived from the data. The fake trainer (`tests.fake_candidate`) keeps
them fast; the command-level tests run ``python -m tests.fake_candidate`` (= ``python -m fdn.search``)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from fdn.search import run_log, settings
from fdn.search import setup as setup_lib
from fdn.search.failure_streak import FailureStreak, TooManyFailures
from fdn.search.state import SearchCheckpointer
from tests import test_search
from tests.test_search import ROOT, XLA_CACHE, run, strip_times, tiny_config

voc_dir = test_search.voc_dir  # the miniature VOC tree fixture


def _command(workdir, voc_dir, *flags):
    return [
        sys.executable,
        "-m",
        "tests.fake_candidate",
        "--config=configs/voc.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={voc_dir}",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
        *flags,
    ]


def _run_command(cmd, **env):
    proc = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), **env), capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def _assert_one_line_error(rc, err, *words):
    """Exit 2 and one ``fdn.search: error:`` line (absl's own log lines, e.g. tfds' image-decoder warning, aside)."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not re.match(r"[IWEF]\d{4} ", ln)]
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("fdn.search: error: "), err[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_stops_after_a_whole_candidate_exits_143_and_resumes(voc_dir, tmp_path):
    """SIGTERM mid-run: exit 143 after a complete line + checkpoint; running again ends as an uninterrupted run."""
    n = 6
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(workdir, voc_dir, f"--config.num_candidates={n}"),
        cwd=ROOT,
        env=dict(os.environ, FDN_FAKE_SLEEP="0.3", PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log = workdir / run_log.FILENAME
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_bytes().count(b"\n") >= 2):
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before SIGTERM"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out.decode()[-2000:]
    assert b"interrupted (SIGTERM)" in out
    records = run_log.read(workdir)
    assert 2 <= len(records) < n
    assert SearchCheckpointer(workdir).latest_step() == len(records)
    assert log.read_bytes().endswith(b"\n")  # no torn line: the write finished before the exit
    run(tiny_config(voc_dir, n=n), workdir)
    run(tiny_config(voc_dir, n=n), tmp_path / "straight")
    straight = strip_times(run_log.read(tmp_path / "straight"))
    assert strip_times(run_log.read(workdir)) == straight
    assert all(r["reward"] > 0 for r in straight) and any(r["stage"] == 2 for r in straight)


# ----------------------------------------------------------------------------------------- run of failures
def test_failure_streak_counts_one_reason_in_a_row():
    streak = FailureStreak()
    for failure in ["NaN loss at step 17", "NaN loss at step 23", "NaN loss at step 5"]:
        streak.add(failure)
    assert streak.count == 3
    streak.add("out of memory")
    assert streak.count == 1 and streak.reason == "out of memory"
    streak.add(None)
    assert streak.count == 0
    records = [{"failure": "x"}, {"failure": None}, {"failure": "y"}, {"failure": "y"}]
    assert FailureStreak.from_records(records).count == 2
    streak.check(0, "w")  # 0 = never stop
    with pytest.raises(TooManyFailures, match="the last 2 candidates all failed: y"):
        FailureStreak("y", 2).check(2, "w")


def test_a_search_whose_candidates_all_fail_stops_with_one_line(voc_dir, tmp_path):
    """Every candidate fails: exit 2 after failures.max_consecutive, the reason named, lines + checkpoint kept;
    a resume continues the count; a larger limit (a runtime key) lets it go on."""
    flags = ("--config.num_candidates=20", "--config.failures.max_consecutive=3")
    rc, _, err = _run_command(_command(tmp_path, voc_dir, *flags), FDN_FAKE_FAIL="stage1:*")
    _assert_one_line_error(rc, err, "the last 3 candidates all failed: injected stage-1 failure", "max_consecutive")
    records = run_log.read(tmp_path)
    assert [r["failure"] for r in records] == ["injected stage-1 failure"] * 3
    assert SearchCheckpointer(tmp_path).latest_step() == 3
    config = tiny_config(voc_dir, n=20)
    config.failures.max_consecutive = 3
    os.environ["FDN_FAKE_FAIL"] = "stage1:*"
    try:
        with pytest.raises(TooManyFailures, match="the last 4 candidates"):  # the streak survives the resume
            run(config, tmp_path)
        assert len(run_log.read(tmp_path)) == 4
        config.failures.max_consecutive = 6
        with pytest.raises(TooManyFailures, match="the last 6 candidates"):
            run(config, tmp_path)
    finally:
        del os.environ["FDN_FAKE_FAIL"]
    config.num_candidates = 8
    assert run(config, tmp_path)["candidates"] == 8  # the cause gone: the same workdir resumes
    assert run_log.read(tmp_path)[-1]["failure"] is None


# ------------------------------------------------------------------------------ resume with other settings
def test_settings_mismatch_names_the_keys():
    saved = settings.flatten({"a": {"b": 1, "c": [1, 2]}, "seed": 3})
    now = dict(saved, **{"a.b": 2, "new.key": True})
    assert settings.differing_keys(saved, now) == ["a.b", "new.key"]
    settings.check_same(saved, settings.fingerprint(saved), saved, "w")
    with pytest.raises(settings.SettingsMismatch, match=r"a\.b \(1 -> 2\), new\.key \(\"<unset>\" -> true\)"):
        settings.check_same(saved, settings.fingerprint(saved), now, "w")


def test_a_checkpoint_from_before_an_added_key_resumes_at_its_old_value():
    """``task`` came with pose search: a segmentation workdir written before it has no such key and must resume
    with task='segmentation', and only with it."""
    old = settings.flatten({"seed": 3, "candidate": {"lr": 0.1}})
    now = dict(old, task="segmentation")
    settings.check_same(old, settings.fingerprint(old), now, "w")
    settings.check_same(None, settings.fingerprint(old), now, "w")
    with pytest.raises(settings.SettingsMismatch, match=r'task \("<unset>" -> "pose"\)'):
        settings.check_same(old, settings.fingerprint(old), dict(old, task="pose"), "w")
    with pytest.raises(settings.SettingsMismatch, match=r"candidate\.lr"):
        settings.check_same(old, settings.fingerprint(old), dict(now, **{"candidate.lr": 0.2}), "w")


def test_runtime_keys_do_not_change_the_fingerprint():
    from configs import voc

    a, b = voc.get_config("tiny"), voc.get_config("tiny")
    b.num_candidates, b.log.top_k, b.failures.max_consecutive, b.data.data_dir = 99, 3, 0, "/elsewhere"
    assert settings.fingerprint(a) == settings.fingerprint(b)
    b.candidate.stage1.lr = 0.5
    assert settings.fingerprint(a) != settings.fingerprint(b)


def test_a_key_made_runtime_later_does_not_refuse_older_checkpoints():
    """``compile_during_setup`` only moves when the same programs compile: toggling it resumes, and checkpoints
    written while it still counted (their stored settings hold it) resume too."""
    from configs import voc

    a, b = voc.get_config("tiny"), voc.get_config("tiny")
    b.compile_during_setup = not a.compile_during_setup
    assert settings.fingerprint(a) == settings.fingerprint(b)
    older = dict(settings.result_settings(a), compile_during_setup=True)  # as written before it was a runtime key
    settings.check_same(older, settings.fingerprint(older), settings.result_settings(b), "w")
    with pytest.raises(settings.SettingsMismatch, match=r"seed \(9314 -> 1\)"):
        settings.check_same(older, settings.fingerprint(older), dict(settings.result_settings(b), seed=1), "w")


@pytest.fixture(scope="module")
def two_candidates(voc_dir, tmp_path_factory):
    """A workdir with 2 finished candidates (the fake trainer), copied by each test that damages it."""
    workdir = tmp_path_factory.mktemp("two")
    run(tiny_config(voc_dir, n=2), workdir)
    return workdir


def test_command_refuses_other_settings_in_one_line(voc_dir, two_candidates, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(two_candidates, workdir)
    before = _tree(workdir)
    rc, _, err = _run_command(
        _command(workdir, voc_dir, "--config.num_candidates=3", "--config.candidate.stage1.lr=0.5")
    )
    line = _assert_one_line_error(
        rc, err, "other search settings", "candidate.stage1.lr (", "-> 0.5)", "new --workdir", "num_candidates"
    )
    assert "seed" not in line.split("settings:")[1].split(";")[0]  # only the differing key is named
    assert _tree(workdir) == before  # config.json included: the first session's settings stay


def test_command_refuses_a_log_shorter_than_its_checkpoint(voc_dir, two_candidates, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(two_candidates, workdir)
    log = workdir / run_log.FILENAME
    log.write_bytes(log.read_bytes().splitlines(keepends=True)[0])  # someone cut the last line
    before = _tree(workdir)
    rc, _, err = _run_command(_command(workdir, voc_dir, "--config.num_candidates=3"))
    _assert_one_line_error(rc, err, "the log was truncated or replaced", "nothing was changed")
    assert _tree(workdir) == before


@pytest.mark.parametrize("damage", ["truncate", "garbage_meta"])
def test_command_reports_a_damaged_checkpoint_in_one_line(voc_dir, two_candidates, tmp_path, damage):
    workdir = tmp_path / "w"
    shutil.copytree(two_candidates, workdir)
    step = workdir / "checkpoints" / "2"
    if damage == "truncate":  # every array file cut in half
        for f in (step / "arrays").rglob("*"):
            if f.is_file() and f.stat().st_size > 16:
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        next(step.rglob("meta/*")).write_text("{not json")
    before = _tree(workdir)
    rc, _, err = _run_command(_command(workdir, voc_dir, "--config.num_candidates=3"))
    _assert_one_line_error(rc, err, "cannot restore step 2", "delete that step directory")
    assert _tree(workdir) == before


# ---------------------------------------------------------------------------- stage-2 steps per epoch
def test_steps_per_epoch_zero_is_derived_from_meta_train():
    cc = ml_collections.ConfigDict({"stage2": {"steps_per_epoch": 0, "batch_size": 32}})
    resolved = setup_lib.resolve_candidate_config(cc, 9523)
    assert resolved.stage2.steps_per_epoch == 297 and cc.stage2.steps_per_epoch == 0  # a copy
    assert setup_lib.resolve_candidate_config(cc, 5).stage2.steps_per_epoch == 1
    cc.stage2.steps_per_epoch = 8
    assert setup_lib.resolve_candidate_config(cc, 9523).stage2.steps_per_epoch == 8
    cc.stage2.steps_per_epoch = -1
    with pytest.raises(setup_lib.SearchConfigError, match="never ends"):
        setup_lib.resolve_candidate_config(cc, 9523)


def test_search_trains_stage_2_for_the_derived_steps(voc_dir, tmp_path):
    """The default 0 reaches the trainer resolved (meta-train 3 // batch 2 = 1), and the value is logged."""
    config = tiny_config(voc_dir, n=2)
    config.candidate.stage2.steps_per_epoch = 0
    lines = []
    from fdn.search import loop as search_loop
    from tests import fake_candidate

    search_loop.run(config, tmp_path, trainer_factory=fake_candidate.CandidateTrainer, progress=False, log=lines.append)
    assert any("stage 2: 1 steps per epoch (meta-train // batch)" in ln for ln in lines), lines
    records = run_log.read(tmp_path)
    assert any(r["stage"] == 2 for r in records) and all(r["failure"] is None for r in records)
    assert json.loads((tmp_path / "config.json").read_text())["candidate"]["stage2"]["steps_per_epoch"] == 0


def test_a_pose_dataset_is_refused_in_one_line_before_any_work(tmp_path):
    """Scoring candidates by PCK is not built: a pose dataset must stop the search with what to do instead of
    a KeyError deep in the stage-1 cache."""
    from fdn.search import setup as setup_lib

    config = tiny_config(tmp_path / "data")
    config.data.name = "mpii_human_pose"
    with pytest.raises(setup_lib.SearchConfigError, match="mpii_human_pose.*configs/mpii_train.py"):
        setup_lib.build(config, tmp_path / "w")
    assert not (tmp_path / "data").exists() and not (tmp_path / "w").exists()

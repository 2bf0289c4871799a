"""The HTML search report (``report/index.html``): cost measure and Pareto front, a self-contained page, the
training commands, atomic refreshes, and the page as a real browser (headless Chromium) shows it."""

import base64
import html
import json
import re
import shutil
import subprocess

import pytest

from fdn import genotype as gt
from fdn.search import leaderboard, run_log
from fdn.search.report import measure, page, run_info
from fdn.train import genotype_source
from tests.test_leaderboard import record

DEMO_CONFIG = {
    "agent": "ppo",
    "seed": 9314,
    "num_candidates": 20,
    "data": {"name": "fdn_shapes", "data_dir": "", "auto_prepare": True},
    "encoder": {"checkpoint": ""},
}
FAILURE = "RESOURCE_EXHAUSTED: out of memory while compiling stage 2"


def _write_run(workdir, rows, config=DEMO_CONFIG, measure_of=None):
    """A fake search workdir: config.json and candidates.jsonl records in the search's format."""
    (workdir / "config.json").write_text(json.dumps(config))
    log = run_log.RunLog(workdir)
    for i, (name, reward) in enumerate(rows):
        r = record(i, name, reward, stopped=(i == 3), failure=FAILURE if i == 5 else None)
        if measure_of:
            r["measure"] = {"name": "latency_ms", "value": measure_of(i)}
        log.append(r)
    log.close()
    return workdir


ROWS = [
    ("arch0", 0.30),
    ("arch1", 0.50),
    ("arch0", 0.40),
    ("arch2", 0.10),
    ("arch1", 0.45),
    ("arch2", 0.0),
    ("arch0", 0.35),
    ("arch1", 0.55),
]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "search").mkdir()
    return _write_run(tmp_path / "search", ROWS)


def _page(workdir):
    return (workdir / leaderboard.REPORT_DIR / page.FILENAME).read_text()


def test_pareto_front():
    P = measure.Point
    pts = [
        P(0, 10, 0.5),
        P(1, 5, 0.3),
        P(2, 5, 0.4),
        P(3, 20, 0.5),
        P(4, 30, 0.6),
        P(5, 1, 0.1),
        P(6, 12, 0.45),
        P(7, 5, 0.4),
    ]
    # 1 (beaten by 2 at the same cost), 3 (by 0, cheaper), 6 (by 0), 7 (equal to 2, which came first) are off it
    assert [p.index for p in measure.pareto_front(pts)] == [5, 2, 0, 4]
    assert measure.pareto_front([]) == []


def test_measure_field_or_parameters():
    plain = record(0, "arch0", 0.2)
    assert measure.measure_of(plain) == ("params_without_aux", 1500.0)
    timed = {**plain, "measure": {"name": "latency_ms", "value": 3.5}}
    assert measure.measure_of(timed) == ("latency_ms", 3.5)
    # one run, one measure: the first record's; failed candidates are not on the plane
    failed = {**timed, "index": 2, "failure": "boom"}
    pts = measure.points([timed, {**plain, "index": 1}, failed])
    assert [(p.index, p.measure) for p in pts] == [(0, 3.5)]


def test_page_is_self_contained_and_complete(workdir):
    leaderboard.write_report(
        workdir, top_k=2, draw_k=0
    )  # as the search's refresh hook calls it: html on: the page comes with it
    text = _page(workdir)
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert len(srcs) == 4 + 2  # rewards, entropy, Pareto, time; one drawing per leaderboard row
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(?:src|href)="(?!data:)|<link|@import|url\(', text), "the page must load nothing"
    body = re.search(r'<table id="leaderboard">.*?<tbody>(.*?)</tbody>', text).group(1)
    assert body.count("<tr>") == 2
    assert body.index(gt.ARCH1.short_hash) < body.index(gt.ARCH0.short_hash)
    failures = re.search(r'<table id="failures">.*?</table>', text).group(0)
    assert failures.count("<tr>") == 2 and "RESOURCE_EXHAUSTED: out of memory" in failures
    for fact in ("9314", "ppo", "8 / 20", "0.5500", "fdn_shapes"):
        assert f"<b>{fact}</b>" in text
    assert '<table id="time">' in text and "compile" in text


def test_train_commands_name_the_design_they_train(workdir):
    leaderboard.write_report(workdir, top_k=3, draw_k=0)
    commands = [html.unescape(c) for c in re.findall(r'<div class="cmd">(.*?)</div>', _page(workdir))]
    assert len(commands) == 3
    wd = workdir.absolute()
    assert commands[0] == (
        f"python -m fdn.train --config=configs/demo_train.py '--config.genotype={wd}#1' "
        f"--workdir={wd}/train/top1 --config.data.data_dir={wd}/data"
    )
    for rank, expected in enumerate([gt.ARCH1, gt.ARCH0, gt.ARCH2], start=1):
        assert genotype_source.resolve(f"{wd}#{rank}") == expected and f"#{rank}'" in commands[rank - 1]


def test_train_command_follows_the_dataset(tmp_path):
    voc = {"data": {"name": "voc_sbd", "data_dir": "/data/tfds"}, "encoder": {"checkpoint": "ckpt/mbv2"}}
    cmd = run_info.train_command(tmp_path, voc, 2)
    assert "--config=configs/voc_train.py" in cmd and f"{tmp_path}#2" in cmd
    assert "--config.data.data_dir=/data/tfds" in cmd and "--config.encoder.checkpoint=ckpt/mbv2" in cmd
    assert run_info.train_command(tmp_path, {"data": {"name": "cityscapes_fine"}}, 1) is None


def test_measure_from_the_log_is_plotted_and_tabled(tmp_path):
    wd = _write_run(tmp_path, ROWS, measure_of=lambda i: 10.0 - i)
    leaderboard.write_report(wd, top_k=3, draw_k=0)
    text = _page(wd)
    assert "<th>latency_ms</th>" in text and "Pareto front (candidate, latency_ms, reward): #7 (3, 0.5500)" in text


def test_refresh_is_atomic(workdir, monkeypatch):
    leaderboard.write_report(workdir, top_k=1, draw_k=0)
    before = _page(workdir)

    def torn_write(self, text, **kwargs):
        with open(self, "w") as f:
            f.write(text[:100])
        raise OSError("disk full")

    monkeypatch.setattr(type(workdir), "write_text", torn_write)
    with pytest.raises(OSError):
        page.write(workdir / leaderboard.REPORT_DIR, "<html>new</html>")
    monkeypatch.undo()
    assert _page(workdir) == before


def test_command_writes_the_page_only_with_html(workdir, capsys):
    assert leaderboard.report_command(str(workdir), top_k=1, draw_k=0, html=False) == 0
    assert not (workdir / leaderboard.REPORT_DIR / page.FILENAME).exists()
    assert leaderboard.report_command(str(workdir), top_k=1, draw_k=0, html=True) == 0
    path = workdir / leaderboard.REPORT_DIR / page.FILENAME
    assert f"page: {path.absolute().as_uri()}" in capsys.readouterr().out and "<table" in path.read_text()


# ------------------------------------------------------------------------------------------- in a real browser


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium here (.ci/run installs it with apt-get where it can): the browser test cannot run")


def _browser(chromium, tmp_path, *args):
    cmd = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        *map(str, args),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _body_attrs(chromium, tmp_path, html_path):
    dom = _browser(chromium, tmp_path, "--dump-dom", html_path.absolute().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1))) if body else {}


def test_page_in_headless_chromium(workdir, tmp_path):
    chromium = _chromium()
    leaderboard.write_report(workdir, top_k=3, draw_k=0)
    html_path = workdir / leaderboard.REPORT_DIR / page.FILENAME
    n_images = _page(workdir).count("<img ")
    attrs = _body_attrs(chromium, tmp_path, html_path)
    assert attrs == {"images": f"ok {n_images}/{n_images}", "leaderboard-rows": "3"}

    # the same check sees a broken image: one figure's bytes cut short
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'(<img src="data:image/png;base64,)[^"]{200}', r"\1AAAA", _page(workdir), count=1))
    assert _body_attrs(chromium, tmp_path, broken)["images"] == f"broken 1/{n_images}"

    shot = workdir / leaderboard.REPORT_DIR / "screenshot.png"
    done = _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", html_path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")

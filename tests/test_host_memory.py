"""``fdn.host_memory``: an fdn command restarts itself once with huge pages for malloc where that pays; a library
import never does; the user's own tunables and the opt-out are respected."""

import json
import os
import subprocess
import sys

import pytest

from fdn import host_memory as H

PY = "/usr/bin/python3"


@pytest.mark.parametrize(
    "argv, orig, expected",
    [
        (["-m", "--x=1"], [PY, "-m", "fdn.search", "--x=1"], "fdn.search"),
        (["-m"], [PY, "-u", "-X", "importtime", "-m", "fdn.bench", "stage1"], "fdn.bench"),
        (["-m"], [PY, "-mfdn.train"], "fdn.train"),
        (["-m"], [PY, "-um", "fdn.predict"], "fdn.predict"),
        (["-m"], [PY, "-W", "ignore", "--check-hash-based-pycs", "never", "-m", "fdn.export"], "fdn.export"),
        (["-m"], [PY, "-m", "fdn"], "fdn"),
        (["-m"], [PY, "-m", "tests.fake_candidate"], None),  # not an fdn command
        (["-m"], [PY, "-m", "fdnx.search"], None),
        (["script.py"], [PY, "script.py", "-m", "fdn.search"], None),  # a script importing fdn
        (["-c"], [PY, "-c", "import fdn"], None),
        (["-m"], [PY, "-", "-m", "fdn.search"], None),  # a program on stdin
        ([], [], None),
    ],
)
def test_command_module_only_for_python_dash_m_fdn(argv, orig, expected):
    assert H.command_module(argv, orig) == expected


def test_tunables_are_added_to_the_users_own():
    assert H.with_hugetlb("") == "glibc.malloc.hugetlb=1"
    assert H.with_hugetlb("glibc.malloc.arena_max=2") == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_reexec_only_where_it_changes_something():
    assert H.should_reexec({}, (2, 36), "madvise")
    assert not H.should_reexec({}, (2, 34), "madvise")  # glibc without the tunable
    assert not H.should_reexec({}, None, "madvise")  # musl, macOS, ...
    assert not H.should_reexec({}, (2, 36), "always")  # already huge
    assert not H.should_reexec({}, (2, 36), "never")
    assert not H.should_reexec({}, (2, 36), None)
    assert not H.should_reexec({"FDN_HOST_HUGEPAGES": "0"}, (2, 36), "madvise")
    assert not H.should_reexec({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36), "madvise")  # the user's say


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert H.thp_mode(str(path)) == "madvise"
    path.write_text("[always] madvise never\n")
    assert H.thp_mode(str(path)) == "always"
    assert H.thp_mode(str(tmp_path / "absent")) is None


def _bench(env):
    argv = [sys.executable, "-m", "fdn.bench", "host_memory", "--gigabytes=0.25", "--rounds=2"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(
    not H.should_reexec({}, H.glibc_version(), H.thp_mode()), reason="needs glibc >= 2.35 and THP in madvise mode"
)
def test_a_command_runs_with_huge_pages_and_takes_far_fewer_page_faults():
    env = {k: v for k, v in os.environ.items() if k not in (H.TUNABLES, H.OPT_OUT)}
    result = _bench(env)
    assert result["fdn"]["state"].startswith("on ("), result
    assert result["glibc_defaults"]["state"].startswith("off ("), result
    # 4 KiB pages fault 262k times per GB; 2 MiB pages 512 times (plus the block's edges)
    assert result["glibc_defaults"]["faults_per_gb"] > 100_000, result
    assert result["fdn"]["faults_per_gb"] < result["glibc_defaults"]["faults_per_gb"] / 20, result


def test_a_library_import_never_restarts_the_process():
    env = {k: v for k, v in os.environ.items() if k not in (H.TUNABLES, H.OPT_OUT)}
    code = "import os, fdn; print(os.getpid(), os.environ.get('GLIBC_TUNABLES', ''))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1:] == [], proc.stdout  # no tunable set: the process ran as started

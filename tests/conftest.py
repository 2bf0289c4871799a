"""Where the suite's time goes: XLA compile seconds per test, next to pytest's own ``--durations``.

Most of the suite's wall time on a 2-core CPU is XLA compiling (and loading from the persistent cache) the
programs of the end-to-end tests; which test pays for a program depends on which one meets it first. To keep
CI within its budget the summary lists the tests with the most compile time, how many programs each compiled
and how many of those it loaded from the persistent cache instead, from JAX's own monitoring events. It works
under xdist (the figures travel in the reports' ``user_properties``); tests that run a subprocess are not
counted (only wall time shows them). ``FDN_TEST_COMPILE_TOP=0`` turns the table off.
"""

from __future__ import annotations

import collections
import os

import pytest

_KEY = "xla_compile"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_counters = collections.Counter()
_last = collections.Counter()
_per_test: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _listen() -> None:
    try:
        from jax._src import dispatch, monitoring
    except ImportError:  # pragma: no cover  (a JAX without the private module: no table, the suite runs)
        return

    def on_event(event, **kwargs):
        if event == _CACHE_HIT:
            _counters["loaded"] += 1

    def on_duration(event, seconds, **kwargs):
        if event == dispatch.BACKEND_COMPILE_EVENT:
            _counters["seconds"] += seconds
            _counters["programs"] += 1

    monitoring.register_event_listener(on_event)
    monitoring.register_event_duration_secs_listener(on_duration)


def pytest_configure(config):
    _listen()


def _take() -> dict:
    delta = _counters - _last
    _last.clear()
    _last.update(_counters)
    return dict(delta)


def pytest_runtest_logstart(nodeid, location):
    _take()  # time between tests (imports, collection) belongs to no test


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    delta = _take()
    if delta:
        outcome.get_result().user_properties.append((_KEY, delta))


def pytest_runtest_logreport(report):
    for key, value in getattr(report, "user_properties", ()):
        if key == _KEY:
            _per_test[report.nodeid].update(value)


def pytest_terminal_summary(terminalreporter):
    top = int(os.environ.get("FDN_TEST_COMPILE_TOP", "15"))
    if not top or not _per_test:
        return
    rows = sorted(_per_test.items(), key=lambda kv: -kv[1]["seconds"])
    total = sum(c["seconds"] for c in _per_test.values())
    write = terminalreporter.write_line
    terminalreporter.section(f"XLA compile time per test (top {top}; {total:.0f} s in all, every worker)")
    for nodeid, c in rows[:top]:
        write(f"{c['seconds']:8.1f}s  compiled {c['programs'] - c['loaded']:3d}  loaded {c['loaded']:3d}  {nodeid}")

"""``python -m fdn.bench coldstart``: a new user's first search, timed, then a warm rerun (issue #12's bars).

Cold: ``python -m fdn.search --config=CONFIG`` in a child process (``fdn.bench._child``) with a fresh workdir and
an empty XLA cache, stopped (SIGTERM: fdn.search stops cleanly) once its first candidate is recorded
(``--cold_candidates``: once that many are, or 0: at its own end); it prints when each part of the set-up ended
(data, teacher, stage-1 cache), when the first candidate was scored, and the CPU-seconds it took. Warm: the same
command in a fresh workdir that links to the cold run's data and teacher, with its XLA cache, for
``--warm_candidates`` candidates to the end: wall time, median seconds between records, compile seconds in the
records and their share. Each is checked against issue #12's bars (first candidate within 3 minutes; 40 warm
candidates within 10 minutes with compile under 15%), and the last line is JSON.

    python -m fdn.bench coldstart                                 # configs/demo.py: ~3 + ~3 min on 2 cores
    python -m fdn.bench coldstart --warm_candidates=0             # the cold start alone
    python -m fdn.bench coldstart --root=/tmp/cs --keep           # keep both workdirs and the XLA cache
    python -m fdn.bench coldstart --cold_candidates=0 --warm_candidates=0   # a whole first search, timed

The processes start from nothing of fdn's (no data, teacher or compiled program), but the machine's file cache
may hold Python's own files from earlier runs: a first command after a reboot pays a few seconds more.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from absl import flags

from fdn.bench import _child
from fdn.errors import UserError

# Issue #12's bars, on 2 CPU cores: the first scored candidate within 3 minutes of the cold command; a warm rerun
# scores 40 candidates within 10 minutes, with compile under 15% of that time.
COLD_FIRST_RECORD_SECONDS = 180.0
WARM_CANDIDATES, WARM_SECONDS, WARM_COMPILE_SHARE = 40, 600.0, 0.15

# Set-up events: (name, text of the search's log line, first or last such line).
EVENTS = (
    ("data ready", "meta-val", "first"),  # "search: DATASET/SPLIT: meta-train N, meta-val M images, ..."
    ("background compile started", "compiling the candidates' programs in the background", "first"),
    ("teacher started", "teacher: training", "first"),
    ("teacher trained", "teacher: step", "last"),
    ("stage-1 cache built", "stage-1 cache of", "first"),
)
RECORDS = "candidates.jsonl"
KEPT_FOR_WARM = ("data", "teacher")  # what the warm run reuses from the cold run's workdir (besides the XLA cache)

FLAGS = flags.FlagValues()
flags.DEFINE_string("config", "configs/demo.py", "the search's config (as fdn.search --config)", flag_values=FLAGS)
flags.DEFINE_string(
    "root", "", "empty or new folder for the workdirs and XLA cache (default: a temporary one)", flag_values=FLAGS
)
flags.DEFINE_bool("keep", False, "keep --root's contents (a temporary root is removed otherwise)", flag_values=FLAGS)
flags.DEFINE_integer(
    "cold_candidates",
    1,
    "stop the cold run at this many records (0: run the config's search to its end)",
    flag_values=FLAGS,
)
flags.DEFINE_integer("warm_candidates", WARM_CANDIDATES, "candidates of the warm rerun (0: none)", flag_values=FLAGS)
flags.DEFINE_integer("cold_timeout", 900, "seconds before the cold run is stopped unscored", flag_values=FLAGS)
flags.DEFINE_integer("warm_timeout", 1800, "seconds before the warm run is stopped", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "search_flag", [], "extra flag for both fdn.search runs (repeatable), e.g. --config.seed=1", flag_values=FLAGS
)
flags.DEFINE_bool("echo", True, "print the searches' log lines as they come, stamped", flag_values=FLAGS)


class ColdStartError(UserError, ValueError):
    """Unusable flags for ``fdn.bench coldstart``."""


def resolve_config(spec: str) -> str:
    """``spec`` (PATH or PATH:ARGS) with PATH found in the working directory or else beside the fdn package (a
    checkout's configs/), as an absolute path, so the children read the file the user meant."""
    path, sep, args = spec.partition(":")
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / path).is_file():
            return str((base / path).resolve()) + sep + args
    raise ColdStartError(f"--config={spec}: no file {path} here or in fdn's checkout; give a config file's path")


def prepare_root(root: str) -> tuple[Path, bool]:
    """(root folder, whether it is temporary). A given root must be new or empty: a cold start needs nothing of an
    earlier run there."""
    if not root:
        return Path(tempfile.mkdtemp(prefix="fdn_coldstart_")), True
    path = Path(root).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ColdStartError(f"--root={root} is not an empty folder; give a new or empty one")
    path.mkdir(parents=True, exist_ok=True)
    return path, False


def search_command(config: str, workdir: Path, xla_cache: Path, extra: list[str], candidates: int = 0) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "fdn.search",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.candidate.compilation_cache_dir={xla_cache}",
    ]
    if candidates:
        command.append(f"--config.num_candidates={candidates}")
    return command + list(extra)


def child_env() -> dict:
    """The environment with this fdn first on the path, so the children run the code this bench came from."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def count_records(path: Path) -> int:
    """Complete lines in a candidates file so far (cheap enough to poll ten times a second)."""
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def read_records(path: Path) -> list[dict]:
    """The complete JSON lines of a candidates file (a line being written when a run was stopped is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def set_up_events(run: _child.ChildRun) -> dict:
    """{event name: seconds from launch} for the `EVENTS` the run's log shows."""
    found = {}
    for name, text, which in EVENTS:
        t = run.first(text) if which == "first" else run.last(text)
        if t is not None:
            found[name] = round(t, 1)
    return found


def record_seconds(run: _child.ChildRun, records: list[dict]) -> list[float]:
    """Seconds from the run's launch to each record (its ``time``, stamped as the search writes it), in order."""
    return sorted(r["time"] - run.started for r in records if "time" in r)


def median_gap(times: list[float]) -> float | None:
    """Median seconds between consecutive records: a candidate as the search runs it (training, evaluation,
    controller), or None with fewer than two."""
    gaps = [b - a for a, b in zip(times, times[1:])]
    return round(statistics.median(gaps), 2) if gaps else None


def warm_summary(run: _child.ChildRun, records: list[dict]) -> dict:
    """Wall time, candidates scored, median seconds per candidate (`median_gap`), the compile seconds the records
    report and their share of the wall."""
    compile_s = sum(float(r.get("seconds", {}).get("compile", 0.0)) for r in records)
    wall = run.wall_seconds
    return {
        "wall_s": round(wall, 1),
        "candidates": len(records),
        "median_s_per_candidate": median_gap(record_seconds(run, records)),
        "compile_s": round(compile_s, 1),
        "compile_share": round(compile_s / wall, 4) if wall > 0 else None,
        "cpu_s": round(run.cpu_seconds, 1),
        "returncode": run.returncode,
    }


def cold_summary(run: _child.ChildRun, records: list[dict]) -> dict:
    times = record_seconds(run, records)
    return {
        "first_record_s": round(times[0], 1) if times else None,
        "candidates": len(records),
        "last_record_s": round(times[-1], 1) if times else None,
        "median_s_per_candidate": median_gap(times),
        "wall_s": round(run.wall_seconds, 1),
        "events_s": set_up_events(run),
        "cpu_s": round(run.cpu_seconds, 1),
        "machine_busy_cores": None if run.machine_busy_cores is None else round(run.machine_busy_cores, 2),
        "first_candidate": (
            {k: records[0].get(k) for k in ("genotype", "reward", "stage")} | {"seconds": records[0].get("seconds")}
            if records
            else None
        ),
        "timed_out": run.timed_out,
        "returncode": run.returncode,
    }


def verdicts(cold: dict, warm: dict | None) -> dict:
    """Issue #12's bars: True / False per bar (None: not measured)."""
    first = cold["first_record_s"]
    out = {"cold_first_record_within_180_s": None if first is None else first <= COLD_FIRST_RECORD_SECONDS}
    if warm is None or warm["candidates"] < WARM_CANDIDATES:
        out["warm_40_within_600_s"] = out["warm_compile_under_15_percent"] = None
    else:
        out["warm_40_within_600_s"] = warm["wall_s"] <= WARM_SECONDS
        out["warm_compile_under_15_percent"] = warm["compile_share"] < WARM_COMPILE_SHARE
    return out


def _echo(tag: str):
    return lambda t, line: print(f"  {tag} [{t:6.1f}] {line}", flush=True)


def run_cold(config: str, root: Path, extra: list[str], candidates: int, timeout: float, echo: bool):
    """The cold search, stopped once ``candidates`` are recorded (0: never; it ends on its own or at ``timeout``)."""
    workdir = root / "cold"
    records = workdir / RECORDS
    run = _child.run(
        search_command(config, workdir, root / "xla", extra),
        env=child_env(),
        stop_when=(lambda: count_records(records) >= candidates) if candidates else None,
        timeout=timeout,
        echo=_echo("cold") if echo else None,
    )
    return run, read_records(records)


def run_warm(config: str, root: Path, extra: list[str], candidates: int, timeout: float, echo: bool):
    workdir = root / "warm"
    workdir.mkdir()
    for name in KEPT_FOR_WARM:  # linked, not copied: a prepared dataset may be gigabytes, and the run only reads it
        if (root / "cold" / name).is_dir():
            (workdir / name).symlink_to((root / "cold" / name).resolve(), target_is_directory=True)
    run = _child.run(
        search_command(config, workdir, root / "xla", extra, candidates),
        env=child_env(),
        timeout=timeout,
        echo=_echo("warm") if echo else None,
    )
    return run, read_records(workdir / RECORDS)


def report(config: str, cold: dict, warm: dict | None, bars: dict) -> None:
    print(f"\nfdn.bench coldstart: {config}; {os.cpu_count()} CPUs here")
    print("cold start (fresh workdir, empty XLA cache), seconds from the command:")
    for name, t in cold["events_s"].items():
        print(f"  {t:7.1f}  {name}")
    first = cold["first_record_s"]
    print(f"  {'-' if first is None else f'{first:7.1f}'}  first candidate scored")
    if cold["candidates"] > 1:
        print(
            f"  {cold['last_record_s']:7.1f}  {cold['candidates']} candidates scored (median "
            f"{cold['median_s_per_candidate']} s between records; the process ended after {cold['wall_s']:.0f} s)"
        )
    busy = cold["machine_busy_cores"]
    print(f"  search process {cold['cpu_s']:.0f} CPU-s; machine {'-' if busy is None else busy} busy cores on average")
    if warm is not None:
        print(f"warm rerun (the cold run's data, teacher and XLA cache; {warm['candidates']} candidates):")
        share = 100 * (warm["compile_share"] or 0)
        print(
            f"  wall {warm['wall_s']:.0f} s, median {warm['median_s_per_candidate']} s between records, compile "
            f"{warm['compile_s']} s in the records ({share:.1f}%), {warm['cpu_s']:.0f} CPU-s"
        )
    words = {None: "-", True: "yes", False: "NO"}
    print("issue #12's bars: " + ", ".join(f"{k} {words[v]}" for k, v in bars.items()))


def main(argv):
    """Bad flags raise ``flags.Error`` or a ``UserError``: ``fdn.bench.__main__`` reports them in one line."""
    FLAGS(argv)
    for name in ("cold_candidates", "warm_candidates"):
        if FLAGS[name].value < 0:
            raise ColdStartError(f"--{name} must be 0 or more, got {FLAGS[name].value}")
    if FLAGS.cold_timeout <= 0 or FLAGS.warm_timeout <= 0:
        raise ColdStartError("--cold_timeout and --warm_timeout must be positive seconds")
    config = resolve_config(FLAGS.config)
    root, temporary = prepare_root(FLAGS.root)
    try:
        cold_run, cold_records = run_cold(
            config, root, FLAGS.search_flag, FLAGS.cold_candidates, FLAGS.cold_timeout, FLAGS.echo
        )
        cold = cold_summary(cold_run, cold_records)
        warm = None
        if FLAGS.warm_candidates and cold_records:
            warm_run, warm_records = run_warm(
                config, root, FLAGS.search_flag, FLAGS.warm_candidates, FLAGS.warm_timeout, FLAGS.echo
            )
            warm = warm_summary(warm_run, warm_records)
    finally:
        if temporary and not FLAGS.keep:
            shutil.rmtree(root, ignore_errors=True)
    bars = verdicts(cold, warm)
    report(config, cold, warm, bars)
    print(json.dumps({"bench": "coldstart", "config": FLAGS.config, "cold": cold, "warm": warm, "bars": bars}))
    if cold["first_record_s"] is None:
        tail = "\n".join(line for _, line in cold_run.lines[-5:])
        print(f"fdn.bench coldstart: the cold search scored no candidate; its last lines:\n{tail}", file=sys.stderr)
        return 1
    return 0

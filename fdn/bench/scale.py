"""``python -m fdn.bench scale --workers=1,2,4,8``: candidates per hour of the search for each worker count.

Each count runs the demo search (``configs/demo.py``, or ``--tiny`` for its test-sized variant) with
``parallel.workers=N`` and ``parallel.lag`` = the largest count (`fdn.search.parallel`), so every count trains
the very same candidates (results depend on the seed and the lag only) and only the speed differs; each in a
fresh workdir that shares the data, the teacher and the XLA cache with the others. The warm-up runs to the last
candidate that compiled anything (`warm_up_end`), at least each worker's first: a worker compiles each program
when one of its candidates first needs it, and a candidate stopped after stage 1 needs no stage-2 program, so a
stage-2 compile can come well after a worker's first candidate (measured: with 4 workers, candidates 4 and 6
still compiled for 84 and 47 s); each count trains ``3 N`` candidates beyond the measured ones to leave room for
it. The rate is measured over the candidates committed after the warm-up, from the log's commit times. ``idle``
is the share of the workers' time in that window spent outside a candidate (waiting for the in-order commit,
the agent, or a job): ``1 - sum(worker seconds) / (N x window)``.

On CPU the devices are fake (``jax_num_cpu_devices``, set here before JAX starts: the largest count): they
share the host's cores, so the gain is bounded by the cores, not by N. On GPUs the counts must not exceed
the local GPUs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
from absl import flags

from fdn.errors import UserError

FLAGS = flags.FlagValues()
flags.DEFINE_string("workers", "1,2,4,8", "worker counts, comma-separated", flag_values=FLAGS)
flags.DEFINE_integer(
    "candidates",
    8,
    "candidates per count beyond the warm-up's room (3 per worker): the search runs 3 x workers + this many, and the "
    "table measures those committed after the warm-up actually ended (its 'candidates' column), more or fewer",
    flag_values=FLAGS,
)
flags.DEFINE_bool("tiny", False, "configs/demo.py:tiny (seconds per candidate)", flag_values=FLAGS)
flags.DEFINE_string("workdir", "", "where the runs go (default: a temporary directory)", flag_values=FLAGS)


class ScaleArgsError(UserError, ValueError):
    """A worker count the bench cannot run."""


def _counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ScaleArgsError(f"--workers={text!r}: give positive worker counts, comma-separated (e.g. 1,2,4)")
    return counts


def _fake_cpu_devices(n: int) -> None:
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX already started: its CPU device count stays
        pass


def _config(tiny: bool, workers: int, lag: int, measured: int, base: Path):
    from configs import demo

    c = demo.get_config("tiny" if tiny else None)
    c.num_candidates = 3 * workers + measured  # room for the warm-up: every worker's compiles (see `measure`)
    c.parallel.workers = workers
    c.parallel.lag = lag
    c.data.data_dir = str(base / "data")
    c.teacher.path = str(base / "teacher")
    c.log.progress = False
    c.log.plot_every = 0
    if not c.candidate.compilation_cache_dir:
        c.candidate.compilation_cache_dir = str(base / "xla")
    return c


COMPILING_S = 1.0  # a candidate that spent longer than this compiling belongs to the warm-up


def warm_up_end(records: list[dict], workers: int) -> int:
    """Index of the warm-up's last candidate: each worker's first, and every candidate that compiled."""
    compiled = [i for i, r in enumerate(records) if r["seconds"].get("compile", 0.0) > COMPILING_S]
    return max([workers - 1, *compiled])


def measure(records: list[dict], workers: int, lag: int) -> dict:
    """Rate and idle share over the candidates committed after the warm-up (`warm_up_end`)."""
    end = warm_up_end(records, workers)
    warm, measured = records[end], records[end + 1 :]
    window = measured[-1]["time"] - warm["time"] if measured else 0.0
    busy = sum(r["seconds"]["total"] - r["seconds"].get("agent", 0.0) for r in measured)
    return {
        "workers": workers,
        "lag": lag,
        "candidates": len(measured),
        "seconds": window,
        "per_hour": 3600.0 * len(measured) / window if window > 0 else float("nan"),
        "idle": max(0.0, 1.0 - busy / (workers * window)) if window > 0 else float("nan"),
        "stage2": sum(r["stage"] == 2 for r in measured),
    }


def table(rows: list[dict]) -> str:
    base = rows[0]["per_hour"]
    lines = ["| workers | lag | candidates | seconds | candidates/h | speed-up | idle share | stage 2 |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['lag']} | {r['candidates']} | {r['seconds']:.1f} | {r['per_hour']:.0f} | "
            f"{r['per_hour'] / base:.2f}x | {r['idle']:.0%} | {r['stage2']} |"
        )
    return "\n".join(lines)


def main(argv):
    FLAGS(argv)
    args = FLAGS
    counts = _counts(args.workers)
    _fake_cpu_devices(max(counts))
    from fdn.search import loop, run_log

    devices = jax.local_devices()
    if max(counts) > len(devices):
        raise ScaleArgsError(f"--workers asks for {max(counts)} workers; this host has {len(devices)} devices")
    base = Path(args.workdir or tempfile.mkdtemp(prefix="fdn_scale_")).absolute()
    print(
        f"fdn.bench scale: {'demo:tiny' if args.tiny else 'demo'} preset, {len(devices)} {devices[0].platform} "
        f"devices ({devices[0].device_kind}), {args.candidates} measured candidates per count, in {base}",
        flush=True,
    )
    rows = []
    for n in counts:
        start = time.time()
        workdir = base / f"workers{n}"
        config = _config(args.tiny, n, max(counts), args.candidates, base)
        loop.run(config, workdir, progress=False, log=lambda *a: None)
        rows.append(measure(run_log.read(workdir), n, max(counts)))
        print(f"  {n} worker(s): {rows[-1]['per_hour']:.0f} candidates/h ({time.time() - start:.0f} s)", flush=True)
    print(table(rows))
    return 0

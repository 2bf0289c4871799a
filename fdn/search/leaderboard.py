"""The report of a search (``python -m fdn.leaderboard WORKDIR``): what a search found, how it learned, and where
its time went.

Reads ``WORKDIR/candidates.jsonl`` (a run in progress is fine) and writes ``WORKDIR/report/``:

* ``leaderboard.md``: the de-duplicated top-k (a genotype sampled several times counts once: best and mean
  reward, times seen), the compile share of wall time and per-quarter mean rewards; also printed;
* ``rewards.png``: reward per candidate (stopped early / failed marked), its running mean and the
  early-stop threshold;
* ``reward_vs_params.png``, ``entropy.png`` (the controller's policy entropy per candidate);
* ``top{k}_{hash}.png/.svg``: cell and decoder drawings of the top genotypes;
* ``pareto.png`` (reward against the run's cost measure, `fdn.search.report.measure`), ``time.png``;
* ``index.html`` (``--html``, and always when the search refreshes its report): one self-contained page of
  all of it, with each top design's drawing and ``fdn.train`` command (`fdn.search.report.page`).

``--compare OTHER [OTHER ...]`` also sets this run beside other runs (e.g. the random-search control of the
same length): a table of their quarter means and ``report/compare.png`` with each run's running mean reward;
when one of them is a budgeted search, also each run's quarters against its target and ``report/budget.png``
(`fdn.search.report.under_budget`).

The search calls `write_report` every ``log.plot_every`` candidates, so the figures follow a live run.
Matplotlib's Agg canvas only (no display, thread-safe figures, no pyplot state).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fdn import genotype as gt  # noqa: E402
from fdn import run_records  # noqa: E402
from fdn.search import run_log  # noqa: E402
from fdn.search.drawing import draw_genotype  # noqa: E402
from fdn.search.report import measure, page, plots, under_budget

REPORT_DIR = page.REPORT_DIR


def unique_genotypes(records: list[dict]) -> list[dict]:
    """One row per genotype hash, best reward first: best and mean reward, params, times seen, the candidates, and
    the quality and measure of its best-rewarded candidate (a budgeted search's reward is quality x a measure
    term, `fdn.search.budget`; records before it have no ``quality``: theirs is their reward)."""
    rows: dict[str, dict] = {}
    for r in records:
        row = rows.setdefault(
            r["hash"],
            {
                "hash": r["hash"],
                "genotype": r["genotype"],
                "rewards": [],
                "indices": [],
                "first_index": r["index"],
                "params": r.get("params_without_aux"),
                "params_total": r.get("params"),
            },
        )
        reward = float(r["reward"] or 0.0)
        if not row["rewards"] or reward > max(row["rewards"]):
            row["quality"] = float(r.get("quality", reward) or 0.0)
            row["measure_name"], row["measure"] = measure.measure_of(r)
        row["rewards"].append(reward)
        row["indices"].append(r["index"])
        if row["params"] is None:
            row["params"], row["params_total"] = r.get("params_without_aux"), r.get("params")
    out = []
    for row in rows.values():
        row["best"] = max(row["rewards"])
        row["mean"] = float(np.mean(row["rewards"]))
        row["seen"] = len(row["rewards"])
        out.append(row)
    return sorted(out, key=lambda r: run_records.rank_key(r["best"], r["first_index"]))


def summary(records: list[dict]) -> dict:
    """Counts, time shares and quarter means of a run's records."""
    n = len(records)
    seconds = {
        k: float(sum(r["seconds"].get(k, 0.0) for r in records))
        for k in ("compile", "stage1", "stage2", "eval", "total")
    }
    rewards = _rewards(records)
    q = max(n // 4, 1)
    return {
        "candidates": n,
        "unique": len({r["hash"] for r in records}),
        "stopped_early": sum(bool(r.get("stopped_early")) for r in records),
        "failed": sum(bool(r.get("failure")) for r in records),
        "best_reward": float(rewards.max()) if n else 0.0,
        "first_quarter_mean": float(rewards[:q].mean()) if n else 0.0,
        "last_quarter_mean": float(rewards[-q:].mean()) if n else 0.0,
        "compile_share": seconds["compile"] / seconds["total"] if seconds["total"] else 0.0,
        "seconds": seconds,
    }


def table(records: list[dict], top_k: int = 10) -> str:
    s = summary(records)
    lines = [
        f"{s['candidates']} candidates ({s['unique']} unique genotypes, {s['stopped_early']} stopped after stage 1, "
        f"{s['failed']} failed); best reward {s['best_reward']:.4f}",
        f"mean reward: first quarter {s['first_quarter_mean']:.4f}, last quarter {s['last_quarter_mean']:.4f}",
        f"time: {s['seconds']['total']:.0f} s in candidates; compile {100 * s['compile_share']:.1f}% of it, "
        f"stage 1 {s['seconds']['stage1']:.0f} s, stage 2 {s['seconds']['stage2']:.0f} s, "
        f"eval {s['seconds']['eval']:.0f} s",
        "",
    ]
    name = measure.measure_name(records)
    own = name != measure.FALLBACK  # a budgeted run: quality and its measure get their own columns
    head = ["rank", "best reward", *(["quality", name] if own else []), "mean", "seen", "params (no aux)", "hash"]
    lines += ["| " + " | ".join([*head, "genotype"]) + " |", "|" + "---|" * (len(head) + 1)]
    for rank, row in enumerate(unique_genotypes(records)[:top_k], start=1):
        params = f"{row['params']:,}" if row["params"] else "-"
        extra = ""
        if own:
            value = "-" if row["measure"] is None else f"{row['measure']:,.6g}"
            extra = f"{row['quality']:.4f} | {value} | "
        lines.append(
            f"| {rank} | {row['best']:.4f} | {extra}{row['mean']:.4f} | {row['seen']} | {params} | {row['hash']} | "
            f"`{gt.parse(row['genotype']).describe()}` |"
        )
    return "\n".join(lines)


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = values[max(0, i - window + 1) : i + 1].mean()
    return out


def _rewards(records: list[dict]) -> np.ndarray:
    return np.array([float(r["reward"] or 0.0) for r in records])


def _save(fig, ax, path: Path, xlabel: str, ylabel: str, legend: str | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(fontsize=8, loc=legend)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_rewards(records: list[dict], path: Path) -> None:
    idx = np.array([r["index"] for r in records])
    rewards = _rewards(records)
    stopped = np.array([bool(r.get("stopped_early")) for r in records])
    failed = np.array([bool(r.get("failure")) for r in records])
    full = ~stopped & ~failed
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    ax.scatter(idx[full], rewards[full], s=12, label="stage 2 reward", color="#2b5d8a")
    ax.scatter(idx[stopped], rewards[stopped], s=12, marker="x", label="stopped after stage 1", color="#a05a00")
    if failed.any():
        ax.scatter(idx[failed], rewards[failed], s=16, marker="v", label="failed", color="#c0392b")
    ax.plot(idx, _running_mean(rewards, max(5, len(rewards) // 10)), color="black", lw=1.5, label="running mean")
    thr = [(r["index"], r["early_stop_threshold"]) for r in records if r.get("early_stop_threshold") is not None]
    if thr:
        ax.plot(*zip(*thr), color="#a05a00", lw=1.0, ls="--", label="early-stop threshold (stage-1 mean)")
    _save(fig, ax, path, "candidate", "reward", legend="lower right")


def plot_reward_vs_params(records: list[dict], path: Path) -> None:
    pts = [
        (r["params_without_aux"], float(r["reward"] or 0.0), bool(r.get("stopped_early")))
        for r in records
        if r.get("params_without_aux")
    ]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if pts:
        p, rw, st = (np.array(v) for v in zip(*pts))
        ax.scatter(p[~st], rw[~st], s=12, color="#2b5d8a", label="stage 2")
        ax.scatter(p[st], rw[st], s=12, marker="x", color="#a05a00", label="stopped after stage 1")
    _save(fig, ax, path, "parameters (without auxiliary heads)", "reward", legend="best" if pts else None)


def plot_entropy(records: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot([r["index"] for r in records], [r.get("entropy") for r in records], color="#2b5d8a")
    _save(fig, ax, path, "candidate", "policy entropy (nats, 19 decisions)")


def write_report(workdir, top_k: int = 10, draw_k: int = 3, html: bool = True) -> Path | None:
    """Writes ``WORKDIR/report/`` (table, plots, drawings and, with ``html``, the page ``index.html``); returns
    the table's path (None without records). The search calls it with ``html`` on, so the page follows a run."""
    workdir = Path(workdir)
    records = run_log.read(workdir)
    if not records:
        return None
    out = workdir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plot_rewards(records, out / "rewards.png")
    plot_reward_vs_params(records, out / "reward_vs_params.png")
    plot_entropy(records, out / "entropy.png")
    plots.plot_pareto(records, out / page.FIGURES["pareto"])
    plots.plot_time(records, out / page.FIGURES["time"])
    for rank, row in enumerate(unique_genotypes(records)[:draw_k], start=1):
        stem = out / f"top{rank}"
        for old in out.glob(f"top{rank}_*"):
            old.unlink()
        draw_genotype(
            gt.parse(row["genotype"]),
            f"{stem}_{row['hash']}",
            f"#{rank} reward {row['best']:.4f} ({row['hash']}): {gt.parse(row['genotype'])}",
        )
    path = out / "leaderboard.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(table(records, top_k) + "\n")
    tmp.replace(path)
    if html:
        write_html(workdir, records, top_k)
    return path


def write_html(workdir: Path, records: list[dict], top_k: int = 10) -> Path:
    """``report/index.html`` from the figures `write_report` has just saved and the top-k designs."""
    out = Path(workdir) / REPORT_DIR
    figures = {key: (out / name).read_bytes() for key, name in page.FIGURES.items()}
    rows = page.leaderboard_rows(unique_genotypes(records)[:top_k], records)
    return page.write(out, page.render(Path(workdir), records, rows, summary(records), figures))


def _run_label(workdir: Path) -> str:
    """``agent @ workdir`` from the run's config.json (the workdir name alone if it has none)."""
    import json

    try:
        agent = json.loads((workdir / "config.json").read_text()).get("agent", "?")
    except (OSError, ValueError):
        agent = "?"
    return f"{agent} @ {workdir.name}"


def compare_table(runs: dict[str, list[dict]]) -> str:
    """One row per run: candidates, mean reward per quarter, overall mean, best."""
    lines = [
        "| run | candidates | Q1 mean | Q2 mean | Q3 mean | Q4 mean | mean | best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, records in runs.items():
        rewards = _rewards(records)
        quarters = np.array_split(rewards, 4) if len(rewards) >= 4 else [rewards] * 4
        qs = " | ".join(f"{q.mean():.4f}" for q in quarters)
        lines.append(f"| {label} | {len(rewards)} | {qs} | {rewards.mean():.4f} | {rewards.max():.4f} |")
    return "\n".join(lines)


def plot_compare(runs: dict[str, list[dict]], path: Path) -> None:
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    for label, records in runs.items():
        rewards = _rewards(records)
        idx = np.array([r["index"] for r in records])
        (line,) = ax.plot(idx, _running_mean(rewards, max(5, len(rewards) // 6)), lw=1.8, label=label)
        ax.scatter(idx, rewards, s=6, alpha=0.35, color=line.get_color())
    _save(fig, ax, path, "candidate", "reward (dots) and running mean (lines)", legend="lower right")


def write_comparison(workdirs: list, out_dir) -> str:
    """``compare.png`` in ``out_dir`` and the comparison table (returned) of the runs in ``workdirs``."""
    runs = {}
    for w in map(Path, workdirs):
        records = run_log.read(w)
        if records:
            runs[_run_label(w)] = (w, records)
    if not runs:
        return "no run to compare has finished candidates"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    rewards = {label: records for label, (_, records) in runs.items()}
    plot_compare(rewards, Path(out_dir) / "compare.png")
    text = compare_table(rewards)
    b = under_budget.find(runs)
    if b is not None:  # a budgeted run among them: each run's quarters against its target, and budget.png
        under_budget.plot(runs, b, Path(out_dir) / under_budget.FIGURE)
        text += "\n\n" + under_budget.table(runs, b)
    return text


def report_command(
    workdir: str, top_k: int = 10, draw_k: int = 3, compare: Sequence[str] = (), html: bool = False
) -> int:
    """``python -m fdn.leaderboard``'s work: print the table (and a comparison), write the report; exit code."""
    for w in [workdir, *compare]:
        if not (Path(w) / run_log.FILENAME).exists():
            print(
                f"fdn.leaderboard: error: no {run_log.FILENAME} in {w}; give the --workdir of a search "
                "(python -m fdn.search --workdir=DIR writes it with the first finished candidate)",
                file=sys.stderr,
            )
            return 2
    path = write_report(workdir, top_k, draw_k, html=html)
    if path is None:
        print(f"fdn.leaderboard: {workdir} has no finished candidate yet")
        return 0
    print(path.read_text())
    if compare:
        print()
        print(write_comparison([workdir, *compare], path.parent))
    print(f"figures in {path.parent}")
    if html:
        print(f"page: {(path.parent / page.FILENAME).absolute().as_uri()}")
    return 0

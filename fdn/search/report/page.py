"""``WORKDIR/report/index.html``: the search report a person opens, one self-contained file.

Everything is inside the file (PNG figures as base64 ``data:`` URIs, the style sheet, a few lines of script),
so it can be mailed, copied off a cluster or opened from a mounted disk. The search rewrites it every
``log.plot_every`` candidates, through a temporary file renamed over the old one, so a browser reloading it
never reads half a page.

The page's script writes what it sees into ``<body>``'s ``data-`` attributes once the page has loaded
(``data-images``: ``ok N/N`` or ``broken K/N``; ``data-leaderboard-rows``): the browser test reads them back.
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from pathlib import Path

from fdn import genotype as gt
from fdn.search.drawing import genotype_figure
from fdn.search.report import measure, plots, run_info

FILENAME = "index.html"
REPORT_DIR = "report"  # = fdn.search.leaderboard.REPORT_DIR (which imports this module)
DESIGNS_DIR = "designs"
# The figures `fdn.search.leaderboard.write_report` saves next to the page, inlined from those files.
FIGURES = {"rewards": "rewards.png", "entropy": "entropy.png", "pareto": "pareto.png", "time": "time.png"}
MAX_FAILURE_ROWS = 100

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6f9;color:#1d2630}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0 0 10px;font-size:20px;font-weight:600}
.facts{display:flex;flex-wrap:wrap;gap:8px 26px}.facts div{font-size:12px;opacity:.75}
.facts b{display:block;font-size:15px;font-weight:600;opacity:1;word-break:break-all}
main{padding:8px 28px 40px;max-width:1400px}section{background:#fff;border-radius:8px;padding:14px 18px;
margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}h2{font-size:16px;margin:0 0 10px;color:#1f3b57}
img{max-width:100%;height:auto}.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
table{border-collapse:collapse;font-size:13px;width:100%}th,td{padding:5px 8px;border-bottom:1px solid #e3e7ec;
text-align:left;vertical-align:top}th{background:#eef2f6;cursor:pointer;user-select:none;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font:12px ui-monospace,Menlo,Consolas,monospace}
.cmd{background:#1d2630;color:#e8edf2;padding:8px 10px;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere}
.design{border-top:1px solid #e3e7ec;padding-top:10px;margin-top:10px}.muted{color:#6b7785;font-size:12px}
.front{color:#a05a00;font-weight:600}
"""

# Marks the images and the leaderboard for the browser test, and sorts a table by a clicked column.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.dataset.images = (broken.length ? 'broken ' + broken.length : 'ok ' + imgs.length) + '/' + imgs.length;
  var lb = document.getElementById('leaderboard');
  document.body.dataset.leaderboardRows = lb ? lb.tBodies[0].rows.length : 0;
});
document.addEventListener('click', function (e) {
  var th = e.target.closest('th'); if (!th) return;
  var body = th.closest('table').tBodies[0], col = th.cellIndex, rows = Array.prototype.slice.call(body.rows);
  var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  function key(r) { var t = r.cells[col].dataset.v || r.cells[col].textContent; var x = parseFloat(t);
                    return isNaN(x) ? t : x; }
  rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
  rows.forEach(function (r) { body.appendChild(r); });
});
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _img_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{_img_uri(png)}" alt="{_e(alt)}">'


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _table(table_id: str, headers: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are already HTML; numeric columns are right-aligned by the caller's ``<td class>``."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value, fmt: str = "{:.4f}") -> str:
    if value is None:
        return '<td class="n" data-v="-1">-</td>'
    return f'<td class="n" data-v="{value}">{_e(fmt.format(value))}</td>'


def _header(facts: dict[str, str]) -> str:
    cells = "".join(f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in facts.items())
    return f'<header><h1>fdn search report</h1><div class="facts">{cells}</div></header>'


def _progress(figs: dict[str, bytes], summary: dict) -> str:
    counts = (
        f"{summary['candidates']} candidates, {summary['unique']} distinct designs, "
        f"{summary['stopped_early']} stopped early after stage 1, {summary['failed']} failed; mean reward "
        f"{summary['first_quarter_mean']:.4f} in the first quarter, {summary['last_quarter_mean']:.4f} in the last"
    )
    return (
        f'<section><h2>Progress</h2><p class="muted">{_e(counts)}</p><div class="row">'
        f"{_img(figs['rewards'], 'reward per candidate')}{_img(figs['entropy'], 'policy entropy')}</div></section>"
    )


def _leaderboard(rows: list[dict], front_hashes: set[str], measure_name: str) -> str:
    own_measure = measure_name != measure.FALLBACK  # else the measure is the "params (no aux)" column
    body = []
    for rank, row in enumerate(rows, start=1):
        star = ' <span class="front" title="on the Pareto front">&#9733;</span>' if row["hash"] in front_hashes else ""
        body.append(
            [
                f'<td class="n">{rank}</td>',
                _num(row["best"]),
                *([_num(row["quality"])] if own_measure else []),
                _num(row["mean"]),
                _num(row["seen"], "{}"),
                *([_num(row["measure"], "{:,.6g}")] if own_measure else []),
                _num(row["params"], "{:,}"),
                _num(row["params_total"], "{:,}"),
                f"<td><code>{_e(row['hash'])}</code>{star}</td>",
                f"<td><code>{_e(gt.parse(row['genotype']).describe())}</code></td>",
            ]
        )
    headers = [
        "rank",
        "best reward",
        *(["quality"] if own_measure else []),
        "mean reward",
        "seen",
        *([measure_name] if own_measure else []),
        "params (no aux)",
        "params (all)",
        "hash",
        "design",
    ]
    return (
        f'<section><h2>Leaderboard</h2><p class="muted">Distinct designs, best reward first (click a column '
        f"to sort; &#9733; = on the Pareto front).</p>{_table('leaderboard', headers, body)}</section>"
    )


def design_png(report_dir: Path, genotype) -> bytes:
    """A design's cell and decoder drawing, drawn once per run: ``report/designs/HASH.png`` is reused by every
    later refresh (a drawing costs ~0.5 s; the rank and reward are written beside it, not in it)."""
    g = gt.parse(genotype)
    path = Path(report_dir) / DESIGNS_DIR / f"{g.short_hash}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(_figure_png(genotype_figure(g, f"design {g.short_hash}")))
        os.replace(tmp, path)
    return path.read_bytes()


def _designs(rows: list[dict], workdir: Path, config: dict) -> str:
    parts = []
    for rank, row in enumerate(rows, start=1):
        png = design_png(workdir / REPORT_DIR, row["genotype"])
        cmd = run_info.train_command(workdir, config, rank)
        cmd_html = (
            f'<div class="cmd">{_e(cmd)}</div>'
            if cmd
            else f'<p class="muted">no fdn.train config for dataset {_e(config.get("data", {}).get("name"))}</p>'
        )
        measure_text = "-" if row["measure"] is None else f"{row['measure']:,.6g}"
        parts.append(
            f'<div class="design" id="design-{rank}"><b>#{rank}</b> <code>{_e(row["hash"])}</code> '
            f'<span class="muted">best reward {row["best"]:.4f}, mean {row["mean"]:.4f} over {row["seen"]}, '
            f"{_e(measure_text)} {_e(row['measure_name'])}</span><br>{_img(png, f'design {rank}')}"
            f'<p class="muted">Train it (ranks can move while the search runs; the hash says which design '
            f"this was):</p>{cmd_html}</div>"
        )
    return f"<section><h2>Top designs</h2>{''.join(parts)}</section>"


def _pareto(png: bytes, records: list[dict]) -> str:
    front = measure.pareto_front(measure.points(records))
    items = ", ".join(f"#{p.index} ({p.measure:,.6g}, {p.reward:.4f})" for p in front) or "none yet"
    return (
        f'<section><h2>Quality against cost</h2><div class="row">{_img(png, "Pareto plot")}</div>'
        f'<p class="muted">Pareto front (candidate, {_e(measure.measure_name(records))}, '
        f"{measure.value_name(records)}): "
        f"{_e(items)}</p></section>"
    )


def _time(png: bytes, records: list[dict]) -> str:
    parts = {k: float(v.sum()) for k, v in plots.time_parts(records).items()}
    total = sum(parts.values()) or 1.0
    rows = [
        [
            f"<td>{_e(k)}</td>",
            _num(v, "{:,.1f}"),
            _num(100 * v / total, "{:.1f}%"),
            _num(v / max(len(records), 1), "{:,.2f}"),
        ]
        for k, v in parts.items()
    ]
    table = _table("time", ["part", "seconds", "share", "per candidate"], rows)
    return f"<section><h2>Where the time went</h2>{_img(png, 'time per candidate')}{table}</section>"


def _failures(records: list[dict]) -> str:
    failed = [r for r in records if r.get("failure")]
    if not failed:
        return '<section><h2>Failures</h2><p class="muted">No candidate failed.</p></section>'
    shown = failed[-MAX_FAILURE_ROWS:]
    rows = [
        [
            _num(r["index"], "{}"),
            f"<td><code>{_e(r['hash'])}</code></td>",
            _num(r.get("stage"), "{}"),
            f"<td><code>{_e(r['failure'])}</code></td>",
        ]
        for r in shown
    ]
    more = f" (the last {len(shown)} of {len(failed)})" if len(shown) < len(failed) else ""
    return (
        f"<section><h2>Failures{_e(more)}</h2>"
        f"{_table('failures', ['candidate', 'hash', 'stage', 'reason'], rows)}</section>"
    )


def render(workdir: Path, records: list[dict], rows: list[dict], summary: dict, figures: dict[str, bytes]) -> str:
    """The whole page; ``rows`` are the leaderboard's top rows (`leaderboard_rows`), ``figures`` PNG bytes."""
    config = run_info.read_config(workdir)
    hash_of = {r["index"]: r["hash"] for r in records}
    front = {hash_of[p.index] for p in measure.pareto_front(measure.points(records))}
    name = measure.measure_name(records)
    body = "".join(
        [
            _header(run_info.header(workdir, config, records, summary)),
            "<main>",
            _progress(figures, summary),
            _leaderboard(rows, front, name),
            _pareto(figures["pareto"], records),
            _designs(rows, workdir, config),
            _time(figures["time"], records),
            _failures(records),
            f'<p class="muted">Written {_e(time.strftime("%Y-%m-%d %H:%M:%S"))}; '
            "reload to follow a running search.</p>",
            "</main>",
        ]
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fdn search: {_e(workdir.name)}'
        f"</title><style>{_STYLE}</style></head><body>{body}<script>{_SCRIPT}</script></body></html>\n"
    )


def leaderboard_rows(unique_rows: list[dict], records: list[dict]) -> list[dict]:
    """The leaderboard's rows with each design's measure (its best-rewarded record's) added."""
    by_index = {r["index"]: r for r in records}
    out = []
    for row in unique_rows:
        best = max((by_index[i] for i in row["indices"]), key=lambda r: float(r["reward"] or 0.0))
        name, value = measure.measure_of(best)
        quality = float(best.get("quality", best["reward"]) or 0.0)
        out.append({**row, "measure_name": name, "measure": value, "quality": quality})
    return out


def write(report_dir: Path, html_text: str) -> Path:
    """Writes the page atomically (temporary file, then rename over the old page)."""
    path = Path(report_dir) / FILENAME
    tmp = path.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    tmp.write_text(html_text, encoding="utf-8")
    os.replace(tmp, path)
    return path

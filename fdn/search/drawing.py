"""Drawings of a genotype's cell and decoder wiring with matplotlib only (no graphviz to install).

The layouts are fixed grids, because a genotype always has the same skeleton: the cell is
``x -> op0 -> 3 pairs (two op boxes and a sum each) -> out`` and the decoder is ``l1..l4 -> b1..b3 ->
head``. Edges are curved so that parallel connections stay apart. Saved as PNG and SVG side by side.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from fdn import genotype as gt

_BOX = dict(boxstyle="round,pad=0.3", fc="#dbe9f6", ec="#2b5d8a")
_SUM = dict(boxstyle="circle,pad=0.25", fc="#fde2c4", ec="#a05a00")
_IO = dict(boxstyle="round,pad=0.3", fc="#e6e6e6", ec="#444444")
_USED = dict(boxstyle="round,pad=0.3", fc="#d5f0d5", ec="#2d7a2d")


def _arrow(ax, p, q, rad=0.0, color="#555555"):
    ax.add_patch(
        FancyArrowPatch(
            p,
            q,
            arrowstyle="-|>",
            mutation_scale=10,
            color=color,
            lw=1.0,
            connectionstyle=f"arc3,rad={rad}",
            shrinkA=14,
            shrinkB=14,
            zorder=1,
        )
    )


def _node(ax, xy, text, style, fontsize=8):
    ax.text(*xy, text, ha="center", va="center", fontsize=fontsize, bbox=style, zorder=2)


def draw_cell(ax, g: gt.Genotype) -> None:
    """The contextual cell: pool features ``[x, op0(x), a1, b1, s1, ...]`` and the sum of loose ends."""
    names = [op.short for op in gt.OPS]  # the op table's labels, as ``Genotype.describe()`` writes them
    pos = {0: (0.0, 0.0), 1: (1.0, 0.0)}
    _node(ax, pos[0], "x", _IO)
    _node(ax, pos[1], names[g.op0], _BOX)
    _arrow(ax, pos[0], pos[1])
    for layer, (p1, p2, o1, o2) in enumerate(g.pairs, start=1):
        a, b, s = 3 * layer - 1, 3 * layer, 3 * layer + 1
        col = 2.0 * layer
        pos[a], pos[b], pos[s] = (col, 0.8), (col, -0.8), (col + 1.0, 0.0)
        _node(ax, pos[a], names[o1], _BOX)
        _node(ax, pos[b], names[o2], _BOX)
        _node(ax, pos[s], "+", _SUM, fontsize=10)
        _arrow(ax, pos[p1], pos[a], rad=-0.25 if pos[p1][0] < col - 1.5 else 0.0)
        _arrow(ax, pos[p2], pos[b], rad=0.25 if pos[p2][0] < col - 1.5 else 0.0)
        _arrow(ax, pos[a], pos[s])
        _arrow(ax, pos[b], pos[s])
    out = (8.0, 0.0)
    _node(ax, out, "out\n(sum)", _IO)
    for i, end in enumerate(g.cell_loose_ends()):
        _arrow(ax, pos[end], out, rad=0.0 if pos[end][0] >= 7 else 0.3 * (-1) ** i, color="#a05a00")
    ax.set_xlim(-0.6, 8.6)
    ax.set_ylim(-1.5, 1.5)
    ax.axis("off")


def draw_decoder(ax, g: gt.Genotype) -> None:
    """Encoder taps l1..l4 (strides 4..32), the three blocks, and the blocks the head concatenates."""
    pos = {i: (0.0, 1.5 - i) for i in range(gt.NUM_ENCODER_OUTPUTS)}
    used = set(g.encoder_levels_used())
    for i in range(gt.NUM_ENCODER_OUTPUTS):
        _node(ax, pos[i], f"l{i + 1}\n1/{4 * 2**i}", _USED if i in used else _IO)
    for b, (i1, i2) in enumerate(g.blocks):
        k = gt.NUM_ENCODER_OUTPUTS + b
        pos[k] = (1.5 + 1.2 * b, 1.0 - 1.0 * b)
        _node(ax, pos[k], f"b{b + 1}", _BOX)
        _arrow(ax, pos[i1], pos[k], rad=0.15)
        _arrow(ax, pos[i2], pos[k], rad=-0.15 if i2 != i1 else 0.35)
    head = (5.6, 0.0)
    _node(ax, head, "concat\n1x1, 3x3\nclassifier", _IO)
    for b in g.collected_blocks():
        _arrow(ax, pos[gt.NUM_ENCODER_OUTPUTS + b], head, color="#a05a00")
    ax.set_xlim(-0.6, 6.4)
    ax.set_ylim(-2.0, 2.0)
    ax.axis("off")


def genotype_figure(g: gt.Genotype, title: str = "") -> Figure:
    """Cell and decoder side by side on one figure (the HTML report inlines it; `draw_genotype` saves it)."""
    g = gt.parse(g)
    fig = Figure(figsize=(13, 3.4))
    cell_ax, dec_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.7, 1]})
    draw_cell(cell_ax, g)
    draw_decoder(dec_ax, g)
    cell_ax.set_title("cell", fontsize=9)
    dec_ax.set_title("decoder", fontsize=9)
    fig.suptitle(title or str(g), fontsize=9)
    fig.tight_layout()
    return fig


def draw_genotype(g: gt.Genotype, path_stem: str | Path, title: str = "") -> list[Path]:
    """Cell and decoder side by side; writes ``STEM.png`` and ``STEM.svg`` and returns their paths."""
    fig = genotype_figure(g, title)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    return paths

"""``python -m fdn.leaderboard WORKDIR [--html] [--compare OTHER ...]``: print a search's leaderboard, write its
report (``--html``: also the page ``WORKDIR/report/index.html``, which a running search refreshes by itself).

The logic lives in `fdn.search.leaderboard`; this module only parses the command line.
"""

from __future__ import annotations

from absl import app, flags

from fdn.cli import run_command
from fdn.errors import report_user_errors

FLAGS = flags.FLAGS
flags.DEFINE_integer("top_k", 10, "rows of the table", lower_bound=1)
flags.DEFINE_integer("draw_k", 3, "genotypes to draw", lower_bound=0)
flags.DEFINE_bool(
    "html",
    False,
    "also write report/index.html: one self-contained page (plots, drawings, training commands) to open in a browser",
)
flags.DEFINE_multi_string(
    "compare", [], "another search workdir to set beside this one (table + report/compare.png); repeat for several"
)


@report_user_errors("fdn.leaderboard")
def main(argv):
    if len(argv) != 2:
        raise app.UsageError(
            "usage: python -m fdn.leaderboard WORKDIR [--html] [--top_k=10] [--draw_k=3] [--compare=OTHER]"
        )
    from fdn.search.leaderboard import report_command

    return report_command(argv[1], top_k=FLAGS.top_k, draw_k=FLAGS.draw_k, compare=FLAGS.compare, html=FLAGS.html)


if __name__ == "__main__":
    run_command(main, "fdn.leaderboard")

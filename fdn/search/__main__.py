"""``python -m fdn.search --config=configs/demo.py --workdir=DIR``: run or resume a decoder search.

Overrides: ``--config.agent=random``, ``--config.num_candidates=100``, ``--config.candidate.stage1.epochs=2``
(a misspelled key is an error). The workdir of an existing run resumes it. Outputs (``candidates.jsonl``,
``checkpoints/``, ``report/``) are described in the README and `fdn.search.loop`.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from fdn.cli import run_command
from fdn.errors import report_user_errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "search config file (configs/demo.py, configs/voc.py[:tiny])", lock_config=True
)
flags.DEFINE_string("workdir", None, "where the run lives; an existing run there is resumed")
flags.mark_flags_as_required(["config", "workdir"])


@report_user_errors("fdn.search")
def main(argv, trainer_factory=None):
    """The command; ``trainer_factory`` (`fdn.candidate.protocol`) is for the search tests' stand-in trainer
    (``python -m tests.fake_candidate`` runs this command with it); ``None`` trains candidates for real."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; the progress line says enough
    from fdn.candidate import CandidateTrainer
    from fdn.search import leaderboard
    from fdn.search import loop as search_loop

    config = FLAGS.config
    summary = search_loop.run(
        config,
        FLAGS.workdir,
        trainer_factory=trainer_factory or CandidateTrainer,
        refresh_report=lambda wd: leaderboard.write_report(wd, top_k=config.log.top_k),
    )
    print(
        f"fdn.search: {summary['candidates']} candidates in {FLAGS.workdir}, best reward "
        f"{summary['best_reward']:.4f}; report: python -m fdn.leaderboard {FLAGS.workdir}"
    )
    return summary["exit_code"]  # 130 after Ctrl-C, 143 after SIGTERM (fdn.interrupts)


if __name__ == "__main__":
    run_command(main, "fdn.search")

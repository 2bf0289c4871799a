"""``python -m fdn.search --config=configs/demo.py --workdir=DIR``: run or resume a decoder search.

Overrides: ``--config.agent=random``, ``--config.num_candidates=100``, ``--config.candidate.stage1.epochs=2``
(a misspelled key is an error). The workdir of an existing run resumes it. Outputs (``candidates.jsonl``,
``checkpoints/``, ``report/``) are described in the README and `fdn.search.loop`.

Multi-host: the same command with ``--distributed`` on every host (``launch/``); process 0 runs the search and
the other processes train candidates on their devices (`fdn.search.parallel.remote`). A lost process stops
the run within ``--heartbeat_timeout_s`` with one line naming it (exit 2); the same command resumes.
"""

from __future__ import annotations

from absl import flags, logging
from ml_collections import config_flags

from fdn.cli import refuse_arguments, run_command
from fdn.distributed import flags as distributed_flags
from fdn.distributed import runtime
from fdn.distributed.watchdog import ProcessLost
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
    refuse_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; the progress line says enough
    options = distributed_flags.options()
    session = _start_session(options) if options else None  # before anything touches a device
    from fdn.candidate import CandidateTrainer
    from fdn.search import leaderboard
    from fdn.search import loop as search_loop
    from fdn.search.parallel import remote

    config = FLAGS.config
    try:
        if session is not None and not session.is_coordinator:
            code = remote.serve(config, FLAGS.workdir, trainer_factory or CandidateTrainer, session)
            session.finish()
            return code
        summary = search_loop.run(
            config,
            FLAGS.workdir,
            trainer_factory=trainer_factory or CandidateTrainer,
            refresh_report=lambda wd: leaderboard.write_report(wd, top_k=config.log.top_k),
        )
    except ProcessLost as err:  # an ordinary exit would wait at JAX's shutdown barrier for the lost process
        runtime.exit_now(f"fdn.search: error: {err}")
    except BaseException as err:
        if session is not None:  # the others leave too (process 0 says why; a worker posted its error already)
            session.finish(f"{type(err).__name__}: {err}")
        raise
    print(
        f"fdn.search: {summary['candidates']} candidates in {FLAGS.workdir}, best reward "
        f"{summary['best_reward']:.4f}; report: python -m fdn.leaderboard {FLAGS.workdir}",
        flush=True,
    )
    if session is not None:
        session.finish("finished" if not summary["exit_code"] else f"interrupted ({summary['signal']})")
    return summary["exit_code"]  # 130 after Ctrl-C, 143 after SIGTERM (fdn.interrupts)


def _start_session(options):
    from fdn.distributed import session

    return session.start(
        options,
        command="fdn.search",
        consequence=f"the search stopped; {FLAGS.workdir} keeps every candidate committed before",
    )


if __name__ == "__main__":
    run_command(main, "fdn.search")

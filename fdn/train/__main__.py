"""``python -m fdn.train --config=configs/voc_train.py --workdir=DIR``: train one genotype fully, or resume.

The genotype is ``--config.genotype``: a released name (``arch0``), a literal, or ``WORKDIR#rank`` of a search
(``WORKDIR#1`` = its best). Data parallel over every local device (``jax.sharding``); ``--distributed`` starts
``jax.distributed`` first (`fdn.distributed.runtime`) for multi-host runs (TPU pods, Slurm; see ``launch/``).
Running the same command again resumes from ``DIR/checkpoints``. Outputs are described in `fdn.train.loop`.

Ctrl-C or SIGTERM (a scheduler's preemption) saves the current step, prints one line and exits 130 / 143.
"""

from __future__ import annotations

import sys

from absl import flags, logging
from ml_collections import config_flags

from fdn.cli import refuse_arguments, run_command
from fdn.distributed import flags as distributed_flags
from fdn.distributed import runtime
from fdn.errors import report_user_errors
from fdn.interrupts import exit_code_of

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "training config (configs/voc_train.py, nyud_train.py, demo_train.py[:depth])", lock_config=True
)
flags.DEFINE_string("workdir", None, "where the run lives; an existing run there is resumed")
flags.mark_flags_as_required(["config", "workdir"])


@report_user_errors("fdn.train")
def main(argv):
    refuse_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    options = distributed_flags.options()
    if options:  # before any device is touched; with no explicit flags JAX detects Slurm / Cloud TPU / Open MPI
        runtime.initialize(options, "fdn.train")
    from fdn.train import loop as train_loop

    try:
        result = train_loop.run(FLAGS.config, FLAGS.workdir)
    except train_loop.TrainingInterrupted as err:
        where = f"at step {err.step}" if err.step is not None else "before the first step"
        print(f"fdn.train: interrupted ({err}) {where}; run the same command again to resume", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:  # a second signal while the first one's checkpoint was being finished
        print("fdn.train: interrupted; run the same command again to resume", file=sys.stderr)
        return exit_code_of(err)
    best = result["best_score"]
    print(
        f"fdn.train: done ({result['steps']} steps); best model {result['best_model']} "
        f"(score {best:.4f} at step {result['best_step']}), final model {result['final_model']}"
        if best is not None
        else f"fdn.train: done; final model {result['final_model']}"
    )
    return 0


if __name__ == "__main__":
    run_command(main, "fdn.train")

"""``python -m fdn.evaluate --checkpoint=DIR [--split=val] [--data_dir=...] [--png_dir=OUT --num_png=8]``

Scores an fdn model checkpoint on a dataset split, single scale, no flip: mIoU with a per-class IoU table for
segmentation, RMSE, log-RMSE, abs rel, sq rel, log10 and delta < 1.25^k for depth, or PCK@0.5 with a per-joint
table for pose (``--flip_test``: SimpleBaseline's flip test; default: as the checkpoint was trained). The dataset,
split, data dir, task and evaluation crop come from the checkpoint's metadata (``fdn.train`` stores them) unless
flags give them; a checkpoint without them (``fdn.convert``) needs ``--dataset`` (and ``--data_dir``).
``--png_dir`` writes input, ground truth and prediction pictures of the first ``--num_png`` images.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags, logging

from fdn.cli import refuse_arguments, run_command
from fdn.errors import InputError, report_user_errors

flags.DEFINE_string("checkpoint", None, "fdn model checkpoint directory (fdn.train's best_model / final_model).")
flags.DEFINE_string("split", None, "split to score (default: the checkpoint's eval split, else 'val').")
flags.DEFINE_string("dataset", None, "tfds dataset name (default: from the checkpoint's metadata).")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: from the checkpoint's metadata).")
flags.DEFINE_string("crop", None, "evaluation crop HxW (default: the checkpoint's; images are padded to it).")
flags.DEFINE_integer(
    "min_side", None, "scale the shorter side up to this first (default: the checkpoint's).", lower_bound=0
)
flags.DEFINE_integer("batch_size", None, "images per step (default: the checkpoint's eval batch).", lower_bound=1)
flags.DEFINE_integer("num_examples", 0, "score only the first n images (0 = all).", lower_bound=0)
flags.DEFINE_list("omit_classes", None, "classes left out of the mIoU (default: the checkpoint's, else none).")
flags.DEFINE_string("png_dir", None, "directory for input / ground truth / prediction PNGs.")
flags.DEFINE_integer("num_png", 8, "pictures to write with --png_dir.", lower_bound=0)
flags.DEFINE_float("depth_max", 8.0, "depth (m) at the top of the colour map in the pictures.")
flags.DEFINE_string("json", None, "also write the metrics to this JSON file.")
flags.DEFINE_bool("flip_test", None, "pose: average with the mirror image's heatmaps (default: the checkpoint's).")
flags.mark_flags_as_required(["checkpoint"])


@report_user_errors("fdn.evaluate")
def main(argv):
    refuse_arguments(argv)
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if f.json and Path(f.json).is_dir():  # found before the evaluation, not after it (a traceback, exit 1)
        raise InputError(
            f"--json={f.json} is a directory; give a file name, e.g. --json={Path(f.json) / 'metrics.json'}"
        )
    from fdn.serve.evaluation import evaluate_checkpoint

    scores, text = evaluate_checkpoint(
        f.checkpoint,
        f.split,
        f.dataset,
        f.data_dir,
        f.crop,
        f.min_side,
        f.batch_size,
        f.num_examples,
        f.omit_classes,
        f.png_dir,
        f.num_png,
        f.depth_max,
        f.flip_test,
    )
    print(text)
    if f.json:
        Path(f.json).parent.mkdir(parents=True, exist_ok=True)
        with open(f.json, "w") as out:
            json.dump(scores, out, indent=2)


if __name__ == "__main__":
    run_command(main, "fdn.evaluate")

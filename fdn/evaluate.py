"""``python -m fdn.evaluate --checkpoint=DIR [--split=val] [--data_dir=...] [--png_dir=OUT --num_png=8]``

Scores an fdn model checkpoint on a dataset split, single scale, no flip: mIoU with a per-class IoU table for
segmentation, or RMSE, log-RMSE, abs rel, sq rel, log10 and delta < 1.25^k for depth. The dataset, split,
data dir, task and evaluation crop come from the checkpoint's metadata (``fdn.train`` stores them) unless
flags give them; a checkpoint without them (``fdn.convert``) needs ``--dataset`` (and ``--data_dir``).
``--png_dir`` writes input, ground truth and prediction pictures of the first ``--num_png`` images.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags, logging

from fdn.errors import InputError, report_user_errors

flags.DEFINE_string("checkpoint", None, "fdn model checkpoint directory (fdn.train's best_model / final_model).")
flags.DEFINE_string("split", None, "split to score (default: the checkpoint's eval split, else 'val').")
flags.DEFINE_string("dataset", None, "tfds dataset name (default: from the checkpoint's metadata).")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: from the checkpoint's metadata).")
flags.DEFINE_string("crop", None, "evaluation crop HxW (default: the checkpoint's; images are padded to it).")
flags.DEFINE_integer("min_side", None, "scale the shorter side up to this first (default: the checkpoint's).")
flags.DEFINE_integer("batch_size", None, "images per step (default: the checkpoint's eval batch).")
flags.DEFINE_integer("num_examples", 0, "score only the first n images (0 = all).")
flags.DEFINE_list("omit_classes", None, "classes left out of the mIoU (default: the checkpoint's, else none).")
flags.DEFINE_string("png_dir", None, "directory for input / ground truth / prediction PNGs.")
flags.DEFINE_integer("num_png", 8, "pictures to write with --png_dir.")
flags.DEFINE_float("depth_max", 8.0, "depth (m) at the top of the colour map in the pictures.")
flags.DEFINE_string("json", None, "also write the metrics to this JSON file.")
flags.mark_flags_as_required(["checkpoint"])


def run(checkpoint_dir, split=None, dataset=None, data_dir=None, crop=None, min_side=None, batch_size=None,
        num_examples=0, omit_classes=None, png_dir=None, num_png=8, depth_max=8.0) -> tuple[dict, str]:
    """``(metrics, report text)``."""
    import jax

    from fdn import checkpoint, evaluation, metrics, sharding, train_step
    from fdn.data import pipeline

    spec, variables, info = checkpoint.load_model(checkpoint_dir)
    meta = info.get("metadata", {})
    ev = meta.get("eval", {})
    dataset = dataset or meta.get("dataset")
    if not dataset:
        raise InputError(f"{checkpoint_dir} does not say which dataset it was trained on; pass --dataset")
    split = split or meta.get("eval_split") or "val"
    data_dir = data_dir or meta.get("data_dir") or None
    task = spec.task
    if crop:
        try:
            crop = tuple(int(v) for v in crop.lower().split("x"))
        except ValueError:
            raise InputError(f"--crop must be HxW, e.g. 512x512, got {crop!r}") from None
    crop = tuple(crop or ev.get("crop_size") or (512, 512))
    crop = crop * 2 if len(crop) == 1 else crop
    min_side = ev.get("min_side", 0) if min_side is None else min_side
    omit = [int(c) for c in (omit_classes if omit_classes is not None else ev.get("omit_classes", []))]
    mesh = sharding.make_mesh()
    batch_size = batch_size or ev.get("batch_size") or 8
    batch_size = -(-batch_size // mesh.size) * mesh.size
    num_classes = spec.decoder.num_classes

    source = pipeline.data_source(dataset, split, data_dir)
    model = spec.build()
    eval_fn = jax.jit(train_step.make_eval_step(model, task, num_classes))
    predict = jax.jit(train_step.make_predict(model, task)) if png_dir else None
    variables = sharding.replicate(variables, mesh)
    written = [0]

    def pictures(i, batch, sharded):
        if predict is not None and written[0] < num_png:
            pred = np.asarray(predict(variables, sharded["image"]))
            written[0] += evaluation.write_pictures(png_dir, written[0], batch, pred, task, num_png, depth_max)

    batches = evaluation.eval_batches(source, crop_size=crop, min_side=min_side, batch_size=batch_size, task=task,
                                      num_examples=num_examples)
    sums = evaluation.accumulate(eval_fn, variables, batches, mesh, on_batch=pictures)
    scores = evaluation.summarise(task, sums, omit)
    n = min(num_examples, len(source)) if num_examples else len(source)
    lines = [f"{checkpoint_dir}: {spec.genotype} ({task}) on {dataset}/{split}, {n} images, crop "
             f"{crop[0]}x{crop[1]}, single scale, no flip"]
    if task == "segmentation":
        lines.append(metrics.class_table(sums["cm"], meta.get("class_names"), omit=omit))
        lines.append(f"mIoU {scores['miou']:.4f}  pixel acc {scores['pixel_acc']:.4f}  mean acc {scores['macc']:.4f}"
                     + (f"  (classes {omit} omitted)" if omit else ""))
    else:
        lines.append("  ".join(f"{k} {scores[k]:.4f}" for k in metrics.DEPTH_KEYS))
    if png_dir:
        lines.append(f"wrote {written[0]} picture(s) (image, gt, pred) to {png_dir}")
    return scores, "\n".join(lines)


@report_user_errors("fdn.evaluate")
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    scores, text = run(f.checkpoint, f.split, f.dataset, f.data_dir, f.crop, f.min_side, f.batch_size,
                       f.num_examples, f.omit_classes, f.png_dir, f.num_png, f.depth_max)
    print(text)
    if f.json:
        with open(f.json, "w") as out:
            json.dump(scores, out, indent=2)


if __name__ == "__main__":
    app.run(main)

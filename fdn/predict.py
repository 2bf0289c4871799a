"""``python -m fdn.predict --checkpoint=DIR --out=OUT.npz [--png=DIR] INPUT...``

Eval-mode forward of an fdn checkpoint on image files (normalised as the official code) or ``.npy`` batches
(already normalised, NHWC float32). ``OUT.npz`` holds ``logits`` (N, h, w, C) at the decoder's own resolution
(before any upsampling) and ``aux_logits_0..2``; ``--png`` also writes a colour-mapped prediction per image at
the input size (VOC palette for segmentation, 'plasma' over [0, --depth_max] m for depth).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import app, flags, logging

from fdn import tasks
from fdn.cli import run_command
from fdn.errors import report_user_errors
from fdn.serve import checkpoint, images, inference, visualize

flags.DEFINE_string("checkpoint", None, "fdn checkpoint directory (from fdn.convert, fdn.train or fdn.search).")
flags.DEFINE_string("out", None, "Output .npz file.")
flags.DEFINE_string("png", None, "Optional directory for colour-mapped predictions at the input size.")
flags.DEFINE_integer("batch_size", 8, "Images per forward pass.")
flags.DEFINE_bool("aux", True, "Also store the auxiliary heads' outputs.")
flags.DEFINE_float("depth_max", 8.0, "Depth (metres) mapped to the top of the colour map in --png output.")
flags.DEFINE_enum("precision", "highest", ["highest", "default"], "Matmul precision (highest: exact f32).")
flags.mark_flags_as_required(["checkpoint", "out"])


def write_pngs(directory, names, outputs, input_size, task, depth_max):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    logits = np.asarray(inference.upsample(outputs["logits"], tuple(input_size)))
    paths = []
    for name, out in zip(names, logits):
        if tasks.get(task).categorical:
            im = visualize.class_map_image(out.argmax(-1))
        else:
            im = visualize.depth_image(out[..., 0], depth_max)
        paths.append(directory / f"{name}.png")
        im.save(paths[-1])
    return paths


def run(checkpoint_dir, out, inputs, png=None, batch_size=8, aux=True, depth_max=8.0, precision="highest"):
    spec, variables, _ = checkpoint.load_model(checkpoint_dir)
    batch, names = images.load_inputs(inputs)
    outputs = inference.predict_batches(spec, variables, batch, batch_size, aux, precision)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **outputs)
    lines = [f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in outputs.items())]
    if png:
        paths = write_pngs(png, names, outputs, batch.shape[1:3], spec.task, depth_max)
        lines.append(f"wrote {len(paths)} PNG file(s) to {png}")
    return "\n".join(lines)


@report_user_errors("fdn.predict")
def main(argv):
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if len(argv) < 2:
        raise app.UsageError("give at least one INPUT (image file or .npy array)")
    print(run(f.checkpoint, f.out, argv[1:], f.png, f.batch_size, f.aux, f.depth_max, f.precision))


if __name__ == "__main__":
    run_command(main, "fdn.predict")

"""``python -m fdn.predict --checkpoint=DIR --out=OUT.npz [--png=DIR] INPUT...``

Eval-mode forward of an fdn checkpoint on image files (normalised as the official code) or ``.npy`` batches
(already normalised, NHWC float32). ``OUT.npz`` holds ``logits`` (N, h, w, C) at the decoder's own resolution
(before any upsampling; pose: the stride-4 heatmaps) and ``aux_logits_0..2``; pose models also write
``OUT.json``, each image's joints ``[x, y, peak]`` in input pixels. ``--png`` writes a picture per image at the
input size (VOC palette for segmentation, 'plasma' over [0, --depth_max] m for depth, the joints and the
checkpoint's skeleton drawn on the image for pose).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from fdn import tasks
from fdn.cli import run_command
from fdn.errors import InputError, report_user_errors
from fdn.serve import checkpoint, images, inference

flags.DEFINE_string("checkpoint", None, "fdn checkpoint directory (from fdn.convert, fdn.train or fdn.search).")
flags.DEFINE_string("out", None, "Output .npz file (a pose model also writes OUT.json).")
# fdn.data.prepare, fdn.export and fdn.convert have their own --overwrite (the same bool, default False): absl's flags
# are global, so this one may meet one of them in a process that imports both (the tests).
flags.DEFINE_bool("overwrite", False, "Replace an existing --out.", allow_override=True)
flags.DEFINE_string("png", None, "Optional directory for colour-mapped predictions at the input size.")
flags.DEFINE_integer("batch_size", 8, "Images per forward pass.", lower_bound=1)
flags.DEFINE_bool("aux", True, "Also store the auxiliary heads' outputs.")
flags.DEFINE_float("depth_max", 8.0, "Depth (metres) mapped to the top of the colour map in --png output.")
flags.DEFINE_enum("precision", "highest", ["highest", "default"], "Matmul precision (highest: exact f32).")
flags.mark_flags_as_required(["checkpoint", "out"])


def predictions(spec, outputs, input_size):
    """The task's prediction (`fdn.tasks`: class ids or depth at the input size, pose joints) of the outputs."""
    rules = tasks.get(spec.task)
    return np.asarray(jax.jit(rules.predict, static_argnums=1)(jnp.asarray(outputs["logits"]), tuple(input_size)))


def write_pngs(directory, names, prediction, batch, task, depth_max, edges=()):
    """One picture per image: the VOC palette, 'plasma' depth, or the joints drawn on the input image."""
    from fdn.conventions import denormalise
    from fdn.serve.evaluation import picture_fn

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    picture = picture_fn(tasks.get(task), depth_max, edges)
    paths = []
    for name, pred, image in zip(names, prediction, batch):
        paths.append(directory / f"{name}.png")
        picture(pred, denormalise(image)).save(paths[-1])
    return paths


def check_outputs(out, png=None, overwrite=False) -> Path:
    """``out`` as the path written, refused before any work where writing would lose or misplace something:
    an existing file (without ``overwrite``; as fdn.export), a name NumPy would silently extend to ``OUT.npz``,
    or a ``png`` directory that is a file (found after the predictions were written, before)."""
    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"--out={out} must name a .npz file, e.g. --out={out.with_suffix('.npz')}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or give another --out")
    if png is not None and Path(png).exists() and not Path(png).is_dir():
        raise InputError(f"--png={png} is a file; give a directory for the pictures")
    return out


def run(
    checkpoint_dir,
    out,
    inputs,
    png=None,
    batch_size=8,
    aux=True,
    depth_max=8.0,
    precision="highest",
    overwrite=False,
):
    out = check_outputs(out, png, overwrite)
    spec, variables, info = checkpoint.load_model(checkpoint_dir)
    batch, names = images.load_inputs(inputs)
    outputs = inference.predict_batches(spec, variables, batch, batch_size, aux, precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **outputs)
    lines = [f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in outputs.items())]
    rules = tasks.get(spec.task)
    prediction = predictions(spec, outputs, batch.shape[1:3]) if png or rules.json_output else None
    if rules.json_output:
        records = rules.to_json(prediction)
        path = out.with_suffix(".json")
        path.write_text(json.dumps({"task": spec.task, "images": dict(zip(names, records))}, indent=1))
        lines.append(f"wrote {path}: {spec.task} predictions of {len(records)} image(s)")
    if png:
        edges = info.get("metadata", {}).get("eval", {}).get("skeleton", ())
        paths = write_pngs(png, names, prediction, batch, spec.task, depth_max, edges)
        lines.append(f"wrote {len(paths)} PNG file(s) to {png}")
    return "\n".join(lines)


@report_user_errors("fdn.predict")
def main(argv):
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if len(argv) < 2:
        raise app.UsageError("give at least one INPUT (image file or .npy array)")
    print(run(f.checkpoint, f.out, argv[1:], f.png, f.batch_size, f.aux, f.depth_max, f.precision, f.overwrite))


if __name__ == "__main__":
    run_command(main, "fdn.predict")

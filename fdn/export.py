"""``python -m fdn.export``: a model checkpoint -> a self-contained inference artifact (runs without fdn).

StableHLO (``jax.export``; needs only jax to run, on CPU or CUDA from the same file)::

    python -m fdn.export --checkpoint=ckpt/arch0_voc --format=stablehlo --size=512x512 --out=arch0.stablehlo
    # elsewhere: jax.export.deserialize(bytearray(open('arch0.stablehlo', 'rb').read())).call(images)

ONNX (through jax2onnx; run with onnxruntime)::

    python -m fdn.export --checkpoint=ckpt/arch0_voc --format=onnx --size=512x512 --out=arch0.onnx

Inputs are normalised NHWC float32 images, outputs logits at the decoder's resolution; eval mode, no
auxiliary heads, BN folded into the convs, weights baked in. ``--batch=0`` exports a symbolic batch size.
``PATH.json`` beside the artifact says all this. See ``fdn.serve.export``.
"""

import sys

from absl import flags, logging

from fdn.cli import refuse_arguments, run_command
from fdn.errors import report_user_errors

flags.DEFINE_string("checkpoint", None, "fdn model checkpoint directory (from fdn.train or fdn.convert).")
flags.DEFINE_enum("format", "stablehlo", ["stablehlo", "onnx"], "Artifact format.")
flags.DEFINE_string("out", None, "Artifact file to write (a PATH.json description is written beside it).")
flags.DEFINE_integer("batch", 1, "Batch size compiled in; 0 for a symbolic batch dimension.", lower_bound=0)
flags.DEFINE_string("size", "512x512", "Input HxW compiled into the artifact.")
flags.DEFINE_bool("fold_bn", True, "Fold eval-mode BatchNorm into the preceding convs.")
flags.DEFINE_list("platforms", ["cpu", "cuda"], "StableHLO: platforms the one artifact can run on.")
flags.DEFINE_bool("overwrite", False, "Replace an existing output.")
flags.mark_flags_as_required(["checkpoint", "out"])


@report_user_errors("fdn.export")
def main(argv):
    refuse_arguments(argv)
    logging.set_verbosity(logging.WARNING)
    from fdn.serve import export as export_lib

    f = flags.FLAGS
    from fdn.serve.images import parse_hw

    h, w = parse_hw(f.size, "--size")
    shape = export_lib.ExportSpec(f.batch or None, h, w)
    try:
        print(export_lib.export_checkpoint(f.checkpoint, f.format, f.out, shape, f.fold_bn, f.platforms, f.overwrite))
    except export_lib.ExportError as err:  # not (yet) one of fdn.errors' user error types
        print(f"fdn.export: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main, "fdn.export")

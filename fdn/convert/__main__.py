"""``python -m fdn.convert``: official PyTorch checkpoints <-> fdn checkpoints.

Official -> fdn::

    python -m fdn.convert --from=arch0_segm-23378522.pth --genotype=arch0 --num_classes=21 \
        --agg_size=64 --repeats=2 --aux_cell=false --out=ckpt/arch0_voc

fdn -> official (an ``.npz`` under the official keys; ``torch.load``-able dicts via
``{k: torch.from_numpy(v) for k, v in np.load(f).items()}``)::

    python -m fdn.convert --from=ckpt/arch0_voc --out=arch0_voc_official.npz

torchvision's ImageNet MobileNet-v2 (user-downloaded ``.pth``) as the encoder of a new model, decoder freshly
initialised (the starting point of a search or a full training)::

    python -m fdn.convert --torchvision --from=mobilenet_v2-7ebf99e0.pth --genotype=arch0 --out=ckpt/arch0_in1k
"""

from absl import flags, logging

from fdn import tasks
from fdn.cli import run_command
from fdn.convert import cli
from fdn.errors import report_user_errors

flags.DEFINE_string("from", None, "Official state dict (.pth/.pth.tar/.npz) or an fdn checkpoint directory.")
flags.DEFINE_string("out", None, "fdn checkpoint directory to write, or .npz file for the reverse direction.")
flags.DEFINE_string("genotype", None, "Genotype: arch0/arch1/arch2 or a literal [[op0, [p1,p2,o1,o2]x3], [[i1,i2]x3]].")
flags.DEFINE_integer("num_classes", 21, "Output channels (21 for VOC, 19 for Cityscapes, 1 for depth).")
flags.DEFINE_integer("agg_size", 64, "Decoder width (48 in the search, 64 in the released models).")
flags.DEFINE_integer("repeats", 2, "Depth of each separable conv (1 in the search, 2 in the released models).")
flags.DEFINE_bool("aux_cell", False, "Whether the auxiliary heads have an auxiliary cell (search: true).")
flags.DEFINE_enum(
    "task",
    tasks.AUTO,
    [tasks.AUTO, *tasks.NAMES],
    "auto guesses between the two legacy tasks (depth iff num_classes == 1); name any other task.",
)
flags.DEFINE_bool("overwrite", False, "Replace an existing output.")
flags.DEFINE_bool(
    "torchvision",
    False,
    "--from is torchvision's ImageNet MobileNet-v2: import it as the encoder "
    "of a new model whose decoder is initialised from --seed.",
)
flags.DEFINE_enum(
    "encoder_layout",
    "official",
    ["official", "torchvision"],
    "With --torchvision: official (the first block has the 32->32 expansion conv, initialised as "
    "--expand_init) or torchvision (no such conv).",
)
flags.DEFINE_enum("expand_init", "identity", ["identity", "random"], "See --encoder_layout.")
flags.DEFINE_integer("seed", 0, "With --torchvision: seed of the decoder's initialisation.")
flags.mark_flags_as_required(["from", "out"])


@report_user_errors("fdn.convert")
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if f.torchvision:
        from fdn.convert import encoder_cli

        print(
            encoder_cli.torchvision_to_fdn(
                getattr(f, "from"),
                f.out,
                f.genotype,
                f.num_classes,
                f.agg_size,
                f.repeats,
                f.aux_cell,
                f.task,
                f.overwrite,
                f.encoder_layout == "official",
                f.expand_init,
                f.seed,
            )
        )
        return
    print(
        cli.run(
            getattr(f, "from"), f.out, f.genotype, f.num_classes, f.agg_size, f.repeats, f.aux_cell, f.task, f.overwrite
        )
    )


if __name__ == "__main__":
    run_command(main, "fdn.convert")

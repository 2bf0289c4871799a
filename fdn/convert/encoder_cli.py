"""The logic behind ``python -m fdn.convert --torchvision``: a model checkpoint that starts from ImageNet.

A user downloads torchvision's MobileNet-v2 ImageNet weights (``mobilenet_v2-7ebf99e0.pth``) and gets an fdn
model checkpoint for a genotype: the encoder from the file, the decoder freshly initialised (seeded numpy
draws in fdn's init scheme, PyTorch's default; see ``fdn.serve.export.random_variables``), so ``fdn.train``,
``fdn.search`` and ``fdn.predict`` take it like any other checkpoint::

    python -m fdn.convert --torchvision --from=mobilenet_v2-7ebf99e0.pth --genotype=arch0 \
        --out=ckpt/arch0_in1k

Trainers that only want the encoder call ``encoder_from_file``.
"""

from __future__ import annotations

from pathlib import Path

from fdn import genotype as G
from fdn import tasks
from fdn.convert.files import read_state_dict
from fdn.convert.torchvision import EncoderImport, encoder_variables_from_torchvision, with_encoder
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.segmenter import ModelSpec, param_counts
from fdn.serve import checkpoint
from fdn.serve.export import random_variables


def encoder_from_file(
    path, expand_first_block: bool = True, expand_init: str = "identity", seed: int = 0
) -> EncoderImport:
    """Encoder variables from a torchvision MobileNet-v2 file (``.pth`` needs torch; ``.npz`` does not)."""
    return encoder_variables_from_torchvision(read_state_dict(path), expand_first_block, expand_init, seed)


def torchvision_to_fdn(
    src,
    out,
    genotype,
    num_classes=21,
    agg_size=64,
    repeats=2,
    aux_cell=False,
    task=tasks.AUTO,
    overwrite=False,
    expand_first_block=True,
    expand_init="identity",
    seed=0,
) -> str:
    """Writes an fdn model checkpoint: ImageNet encoder from ``src``, decoder initialised from ``seed``."""
    if genotype is None:
        raise G.GenotypeError(
            "--genotype is required: the checkpoint holds a whole segmenter, and the "
            "ImageNet file says nothing about the decoder (arch0, arch1, arch2 or a "
            "literal)"
        )
    task = tasks.resolve(task, num_classes)
    spec = ModelSpec(
        G.parse(genotype), DecoderSettings(num_classes, agg_size, repeats, aux_cell), task, expand_first_block
    )
    imported = encoder_from_file(src, expand_first_block, expand_init, seed)
    variables = with_encoder(random_variables(spec, seed), imported.variables)
    metadata = {
        "encoder_from": str(Path(src).absolute()),
        "encoder_source": "torchvision mobilenet_v2",
        "decoder_init_seed": seed,
        "first_block_expand_init": imported.expand_init,
    }
    path = checkpoint.save_model(out, variables, spec, metadata, overwrite)
    counts = param_counts(variables[N.PARAMS])
    return (
        f"wrote {path}: {spec.genotype.describe()}; {counts['total']:,} parameters "
        f"({counts['without_aux']:,} without auxiliary heads); {imported.summary()}"
    )

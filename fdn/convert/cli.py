"""The logic behind ``python -m fdn.convert`` (kept out of ``__main__`` so tests can call it)."""

from __future__ import annotations

from pathlib import Path

from fdn import genotype as G
from fdn import tasks
from fdn.convert.files import read_state_dict, write_npz
from fdn.convert.segmenter import torch_from_variables, variables_from_torch
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.segmenter import ModelSpec, param_counts
from fdn.serve import checkpoint


def official_to_fdn(
    src, out, genotype, num_classes=21, agg_size=64, repeats=2, aux_cell=False, task=tasks.AUTO, overwrite=False
) -> str:
    if genotype is None:
        raise G.GenotypeError(
            "--genotype is required to convert an official state dict (arch0, arch1, arch2 "
            "or a literal); the state dict alone does not say which design it holds"
        )
    task = tasks.resolve(task, num_classes)
    spec = ModelSpec(G.parse(genotype), DecoderSettings(num_classes, agg_size, repeats, aux_cell), task)
    variables = variables_from_torch(read_state_dict(src), spec)
    path = checkpoint.save_model(out, variables, spec, {"converted_from": str(Path(src).absolute())}, overwrite)
    counts = param_counts(variables[N.PARAMS])
    return (
        f"wrote {path}: {spec.genotype.describe()}; {counts['total']:,} parameters "
        f"({counts['without_aux']:,} without auxiliary heads)"
    )


def fdn_to_official(src, out, overwrite=False) -> str:
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"the official-format output must be an .npz file, got {out}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    _, variables, _ = checkpoint.load_model(src)
    sd = torch_from_variables(variables)
    write_npz(out, sd)
    return f"wrote {out}: {len(sd)} official keys"


def run(
    src, out, genotype=None, num_classes=21, agg_size=64, repeats=2, aux_cell=False, task=tasks.AUTO, overwrite=False
) -> str:
    if Path(src).is_dir():
        return fdn_to_official(src, out, overwrite)
    return official_to_fdn(src, out, genotype, num_classes, agg_size, repeats, aux_cell, task, overwrite)

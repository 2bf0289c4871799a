"""One official stage-1 step through fdn, for the parity tests (``../shared/parity/search_a_stage1*``).

Why a module of its own: the same step is run twice, in float32 against the official float32 fixture and in
float64 (``jax.enable_x64``) against the official step recomputed in float64, and both runs must be built the
same way. The float32 fixture alone cannot judge a port sharply: its random encoder gives nearly constant
features, so some BatchNorms see batch variances of 1e-15..1e-9 and the float32 answer (the official one
and fdn's alike) is off the exact one by 1.7e-4..2.0e-4 in the gradient norm and 0.050..0.056 in the update
(see ``../shared/parity/README.md``). In float64 both sides are exact to ~1e-12 and any real difference
shows.

The step is fdn's own ``fdn.candidate.steps.stage1_step`` with the candidate's optimiser; the only addition
is an identity transformation in front of the optimiser that keeps the raw gradient it was given, so the
per-parameter gradients can be compared with the fixture's ``grad/*`` from the very same compiled step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fdn import genotype as G
from fdn.candidate import default_config, flat, optim, steps
from fdn.candidate.programs import make_programs
from fdn.models.decoder import DecoderSettings

PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
PROGRAMS = ("per_genotype", "universal")


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def available(case: str) -> bool:
    return (PARITY / f"{case}.npz").is_file()


def load(case: str):
    """(arrays, meta) of a parity case."""
    with np.load(PARITY / f"{case}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads((PARITY / f"{case}.json").read_text())


class RawGradState(NamedTuple):
    grad: jax.Array


def keep_raw_grad() -> optax.GradientTransformation:
    """Identity on the updates; its state holds the last gradient it saw (the step's raw gradient)."""
    return optax.GradientTransformation(
        lambda p: RawGradState(jnp.zeros_like(p)), lambda g, s, p=None: (g, RawGradState(g))
    )


def run_step(program: str, case: str = "search_a_stage1") -> dict:
    """One stage-1 step of ``case`` through the ``program`` decoder layout, in the case's own dtype.

    For the float64 case call it under ``jax.enable_x64(True)``. Returns the official names' views of the
    parameters before (``init``) and after (``after``, BN running statistics included) the step, the Polyak
    average (``avg``), the raw gradient (``grad``, official names), the step's metrics, and the pieces the
    optimiser-only test reuses (``tx``, ``state``, ``flattener``, ``names``).
    """
    from fdn.convert.segmenter import torch_from_variables, variables_from_torch
    from fdn.models.segmenter import ModelSpec

    arrays, meta = load(case)
    dtype = arrays["enc_out0"].dtype
    genotype = G.parse(meta["genotype"])
    kw = meta["decoder_kwargs"]
    settings = DecoderSettings(kw["num_classes"], kw["agg_size"], kw["repeats"], kw["aux_cell"])
    spec = ModelSpec(genotype, settings)
    # The converter reads full segmenter state dicts; search_a holds the same model's encoder.
    with np.load(PARITY / "search_a.npz") as z:
        state_dict = {k: z[k] for k in z.files if k.startswith("encoder.")}
    state_dict.update({"decoder." + k[len("init/") :]: v for k, v in arrays.items() if k.startswith("init/")})
    variables = variables_from_torch(state_dict, spec)
    dec_vars = {"params": variables["params"]["decoder"], "batch_stats": variables["batch_stats"]["decoder"]}
    programs = make_programs(program, settings)
    # The layout conversions work in float32 (exact for these float32-born weights); the step runs in dtype.
    prog_vars = jax.tree.map(lambda v: np.asarray(v, dtype), programs.to_program(dec_vars, genotype))
    cfg = default_config().stage1
    flattener = flat.Flattener(prog_vars["params"])
    trainable = 1.0 - flattener.mask(optim.decoder_labels(prog_vars["params"], genotype), optim.FROZEN)
    tx = optax.chain(keep_raw_grad(), optim.flat_adam(cfg.lr, cfg.weight_decay, cfg.grad_clip, trainable))
    state = steps.init_state(tx, flattener.flatten(prog_vars["params"]), prog_vars["batch_stats"])
    predict, plan = programs.stage1_predict(genotype), programs.plan(genotype)
    feats = [jnp.asarray(arrays[f"enc_out{i}"].transpose(0, 2, 3, 1)) for i in range(4)]
    labels = jnp.asarray(arrays["y"].astype(np.int32))
    teacher = jnp.asarray(arrays["kd_y"].transpose(0, 2, 3, 1))
    with jax.default_matmul_precision("highest"):
        step = jax.jit(lambda s, f, y, t, d: steps.stage1_step(predict, tx, flattener, cfg, s, f, y, t, d))
        new_state, metrics = step(state, feats, labels, teacher, plan)

    def official_names(params, batch_stats=None):
        params = jax.tree.map(np.asarray, params)
        ordinary = programs.to_ordinary(
            {"params": params, "batch_stats": batch_stats or prog_vars["batch_stats"]}, genotype
        )
        v = {"params": {"decoder": ordinary["params"]}}
        if batch_stats is not None:
            v["batch_stats"] = {"decoder": ordinary["batch_stats"]}
        sd = torch_from_variables(v)
        return {k[len("decoder.") :]: x for k, x in sd.items() if not k.endswith("tracked")}

    new_state = jax.device_get(new_state)
    return {
        "programs": program,
        "arrays": arrays,
        "meta": meta,
        "metrics": jax.device_get(metrics),
        "tx": tx,
        "state": state,
        "flattener": flattener,
        "init": official_names(dec_vars["params"]),
        "grad": official_names(flattener.unflatten(new_state["opt_state"][0].grad)),
        "after": official_names(flattener.unflatten(new_state["params"]), new_state["batch_stats"]),
        "avg": official_names(flattener.unflatten(new_state["avg"])),
        "names": official_names,
    }

"""Mixed precision for the candidate programs (``candidate.precision``): bf16 activations, f32 master weights.

``'float32'`` (the default) leaves the decoder programs untouched. ``'bfloat16'`` wraps a program's *predict*
functions (`fdn.candidate.programs`), so every stage-1, stage-2 and evaluation program computes its forward
and backward in bfloat16 while what it keeps stays float32: the parameters, the inputs (cached features,
images) are cast to bfloat16 inside the function, so the gradients come back to the float32 master weights
through the casts, and the outputs (logits) are cast to float32 before the losses, softmax and metrics see
them. Optimiser states, Polyak averages and losses never leave float32; BatchNorm running statistics stay
float32 (fdn's BatchNorms compute batch statistics in at least float32 whatever the activation dtype, and
`mixed` casts the new ones back to their stored dtype in any case).

Why a wrapper rather than a dtype in every module: the modules already compute in their input's dtype (a conv
casts its kernel to it; `fdn.models.conv` and `fdn.models.depthwise` accumulate bf16 in float32), so casting
at the edges is all it takes, and the float32 programs stay exactly what they were.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fdn.errors import UserError
from fdn.models import names as N

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
PRECISIONS = (FLOAT32, BFLOAT16)


class PrecisionError(UserError, ValueError):
    """A ``candidate.precision`` that is not one of `PRECISIONS`."""


def check(precision: str) -> str:
    """``precision`` if it is one of `PRECISIONS`; else a one-line `PrecisionError` naming the setting."""
    if precision not in PRECISIONS:
        raise PrecisionError(
            f"candidate.precision must be one of {', '.join(repr(p) for p in PRECISIONS)}, got {precision!r}"
        )
    return precision


def of_config(config) -> str:
    """The checked precision of a candidate config (``float32`` where the field is absent: older configs)."""
    return check(config.get("precision", FLOAT32))


def to_compute(tree, dtype=jnp.bfloat16):
    """Every floating-point leaf of ``tree`` in ``dtype`` (integer leaves, e.g. labels, untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def to_f32(tree):
    return to_compute(tree, jnp.float32)


def _like(new, old):
    """``new`` (BatchNorm statistics after a step) in ``old``'s dtypes: stored statistics never change dtype."""
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


class MixedPrecision:
    """A ``DecoderProgram`` (`fdn.candidate.programs`) whose predict functions run in ``dtype`` (module docstring).

    Everything but the three predict functions is the wrapped program's: keys, plans, layouts and abstract
    variables (float32) are unchanged, so the trainer and the compiled table see no difference."""

    def __init__(self, programs, dtype=jnp.bfloat16):
        self.inner = programs
        self.dtype = dtype
        self.universal = programs.universal
        self.settings = programs.settings

    def __getattr__(self, name):  # key, plan, abstract, to_program, to_ordinary, layout, task, ...
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def stage1_predict(self, genotype=None):
        predict, dt = self.inner.stage1_predict(genotype), self.dtype

        def run(params, batch_stats, feats, size, plan):
            out, aux, new = predict(to_compute(params, dt), batch_stats, to_compute(feats, dt), size, plan)
            return to_f32(out), to_f32(aux), _like(new, batch_stats)

        return run

    def stage2_predict(self, genotype=None):
        predict, dt = self.inner.stage2_predict(genotype), self.dtype

        def run(params, batch_stats, images, labels, plan):
            logits, small, aux, new = predict(to_compute(params, dt), batch_stats, images.astype(dt), labels, plan)
            return to_f32(logits), small, to_f32(aux), _like(new, batch_stats)

        return run

    def eval_predict(self, genotype=None):
        predict, dt = self.inner.eval_predict(genotype), self.dtype

        def run(variables, feats, size, plan):
            cast = dict(variables, **{N.PARAMS: to_compute(variables[N.PARAMS], dt)})
            return to_f32(predict(cast, to_compute(feats, dt), size, plan))

        return run


def mixed(programs, precision: str):
    """``programs`` as they are for ``'float32'``; wrapped in `MixedPrecision` for ``'bfloat16'``."""
    return programs if check(precision) == FLOAT32 else MixedPrecision(programs)

"""How a candidate's decoder enters the compiled programs: per genotype, or universal.

``OrdinaryPrograms``: the genotype is fixed in the traced code (``fdn.models.decoder.Decoder``), so every new
genotype compiles its own stage-1, stage-2 and evaluation programs. Fastest per step; right when compiles are
cheap relative to training (long candidates on an accelerator) or for one genotype.

``UniversalPrograms``: the decoder is ``fdn.models.universal.UniversalDecoder`` and the genotype is *data* (a plan of
small arrays), so one compile of each program serves the whole search. Costs per step: the slot switch's
recomputation in the backward pass and canvas-sized buffers; saves a compile per candidate.

Both are a ``DecoderProgram``: what ``CandidateTrainer`` (and the benchmarks) may ask of a decoder program,
so the trainer never branches on which one it has. ``'auto'`` (the default ``candidate.programs``) picks one where
the programs will run, by `resolve_kind`: per genotype on a CPU when a candidate's stage 1 is long enough for the
faster step to repay the compile, universal otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from fdn import genotype as G
from fdn import placement, tasks
from fdn.candidate import precision as precision_lib
from fdn.conventions import IGNORE_LABEL as IGNORE
from fdn.errors import UserError
from fdn.models import names as N
from fdn.models.decoder import Decoder, DecoderSettings
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.resize import resize_bilinear, resize_nearest
from fdn.models.segmenter import Segmenter, eval_forward
from fdn.models.universal import Geometry, UniversalDecoder, make_plan
from fdn.models.universal.decoder import resize_from_level, resize_levels

UNIVERSAL, PER_GENOTYPE, AUTO = "universal", "per_genotype", "auto"
KINDS = (AUTO, UNIVERSAL, PER_GENOTYPE)

# `resolve_kind`: on a CPU, per-genotype programs from this much stage-1 work per candidate (cached examples x epochs
# x crop pixels). Measured on the 2-core CPU (2026-12-06, `python -m fdn.bench stage1`, batch 16, crop 256): the
# per-genotype step takes 1.55 / 1.73 s where the universal one takes 3.06 / 2.66 s (genotypes search_a / search_b,
# after the universal cell's hand-written backward; 4.09 / 3.98 s before), ~0.7-1.4 us per pixel-example saved,
# against ~21 s to lower and compile a genotype's stage-1 program (its evaluation and stage-2 programs about as much
# again): it pays from ~3e7-9e7. The demo's stage 1 (192 x 3 x 64^2 = 2.4e6) stays universal, where compiles
# dominate; the paper's (4000 x 5 x 256^2 = 1.3e9, 15-40x the threshold) runs per genotype, ~1.5-2x faster.
CPU_PER_GENOTYPE_WORK = 5e7


class ProgramsError(UserError, ValueError):
    """``candidate.programs`` is not one of `KINDS`."""


def stage1_work(num_examples: int, epochs: int, crop_pixels: int) -> float:
    """Pixel-examples one candidate's stage 1 trains on: cached examples x epochs x pixels per crop."""
    return float(num_examples) * epochs * crop_pixels


def config_stage1_work(stage1) -> float:
    """`stage1_work` of a ``candidate.stage1`` config (square crops of ``crop_size``)."""
    return stage1_work(stage1.num_examples, stage1.epochs, stage1.crop_size**2)


def resolve_kind(kind: str, work: float, platform: str) -> str:
    """``kind`` (``candidate.programs``) with ``'auto'`` made concrete for programs that run on ``platform``
    ('cpu', 'gpu', 'tpu') and train on ``work`` (`stage1_work`) per candidate: ``'per_genotype'`` on a CPU from
    `CPU_PER_GENOTYPE_WORK`, else ``'universal'`` (on accelerators too: there the two are close at the paper's
    settings and per-genotype compiles are not measured to pay yet; README). A value outside `KINDS` is a
    one-line `ProgramsError`."""
    if kind not in KINDS:
        raise ProgramsError(f"candidate.programs must be one of {', '.join(repr(k) for k in KINDS)}, got {kind!r}")
    if kind != AUTO:
        return kind
    return PER_GENOTYPE if platform == "cpu" and work >= CPU_PER_GENOTYPE_WORK else UNIVERSAL


# The genotype's array form (``fdn.models.universal.make_plan``, as device arrays), or None where the
# genotype is fixed in the traced code.
Plan = dict | None
# ``(params, batch_stats, feats, size, plan) -> (logits, aux logits, new batch_stats)``, outputs at ``size``.
Stage1Predict = Callable[..., tuple]
# ``(params, batch_stats, images, labels, plan) -> (logits, labels at their size, aux logits, new batch_stats)``.
Stage2Predict = Callable[..., tuple]
# ``(variables, feats, size, plan) -> logits at size`` (eval mode, no aux heads).
EvalPredict = Callable[..., Any]


@runtime_checkable
class DecoderProgram(Protocol):
    """How a candidate's decoder enters the compiled programs (``fdn.candidate.steps``).

    Variables come in two layouts: the *ordinary* one (``fdn.models.decoder.Decoder``'s tree, what
    checkpoints, parameter counts and the rest of fdn use) and the program's own (the same for the ordinary
    program). The trainer keeps the program's layout during training and converts at the edges.
    """

    universal: bool
    settings: DecoderSettings

    def key(self, genotype: G.Genotype) -> Hashable:
        """Cache key of the compiled programs: equal keys share executables."""

    def plan(self, genotype: G.Genotype) -> Plan:
        """The genotype as the programs' last argument."""

    def abstract(self, genotype: G.Genotype, feature_shapes) -> dict:
        """ShapeDtypeStructs of the decoder variables in the program's layout, for encoder outputs of
        ``feature_shapes`` (any batch size)."""

    def ordinary_abstract(self, genotype: G.Genotype, feature_shapes) -> dict:
        """ShapeDtypeStructs of the ordinary decoder's variables for ``genotype`` (what a candidate's weights are
        drawn in, and its parameters counted from)."""

    def to_program(self, variables: dict, genotype: G.Genotype) -> dict:
        """Ordinary decoder variables -> the program's layout."""

    def to_ordinary(self, variables: dict, genotype: G.Genotype) -> dict:
        """The program's layout -> ordinary decoder variables."""

    def stage1_predict(self, genotype: G.Genotype) -> Stage1Predict:
        """The decoder on cached encoder outputs, train mode, with aux heads."""

    def stage2_predict(self, genotype: G.Genotype) -> Stage2Predict:
        """Encoder and decoder on images, train mode, with aux heads (params ``{'encoder', 'decoder'}``)."""

    def eval_predict(self, genotype: G.Genotype) -> EvalPredict:
        """The decoder on encoder outputs, eval mode, without aux heads."""


def ordinary_abstract(genotype, settings: DecoderSettings, feature_shapes) -> dict:
    decoder = Decoder(genotype, settings)
    small = [jax.ShapeDtypeStruct((2, *s[1:]), jnp.float32) for s in feature_shapes]
    return jax.eval_shape(lambda: decoder.init(jax.random.PRNGKey(0), small, train=False))


class OrdinaryPrograms:
    """``DecoderProgram`` with the genotype in the traced code: ``key`` is the genotype, the plan is None.

    ``task`` (`fdn.tasks`): segmentation's stage-2 labels are nearest-downsampled to the outputs; a task with an
    ``output_stride`` (pose) gets its outputs upsampled to that stride (as ``fdn.train``'s model) and its targets
    (keypoints in input pixels) as they are."""

    universal = False

    def __init__(self, settings: DecoderSettings, expand_first_block: bool = True, task: str = tasks.SEGMENTATION):
        self.settings = settings
        self.expand_first_block = expand_first_block
        self.task = task

    def key(self, genotype):
        return genotype

    def plan(self, genotype):
        return None

    def abstract(self, genotype, feature_shapes):
        return ordinary_abstract(genotype, self.settings, feature_shapes)

    ordinary_abstract = abstract  # the program's layout is the ordinary one

    def to_program(self, variables, genotype):
        return variables

    def to_ordinary(self, variables, genotype):
        return variables

    def stage1_predict(self, genotype):
        decoder = Decoder(genotype, self.settings)

        def predict(params, batch_stats, feats, size, plan):
            (logits, aux), upd = decoder.apply(
                {N.PARAMS: params, N.BATCH_STATS: batch_stats},
                feats,
                train=True,
                with_aux=True,
                mutable=[N.BATCH_STATS],
            )
            return resize_bilinear(logits, size), [resize_bilinear(a, size) for a in aux], upd[N.BATCH_STATS]

        return predict

    def stage2_predict(self, genotype):
        segmentation = self.task == tasks.SEGMENTATION
        model = Segmenter(genotype, self.settings, self.expand_first_block, tasks.get(self.task).output_stride)

        def predict(params, batch_stats, images, labels, plan):
            (logits, aux), upd = model.apply(
                {N.PARAMS: params, N.BATCH_STATS: batch_stats},
                images,
                train=True,
                with_aux=True,
                mutable=[N.BATCH_STATS],
            )
            size = logits.shape[1:3]
            small = resize_nearest(labels, size) if segmentation else labels
            return (logits, small, [resize_bilinear(a, size) for a in aux], upd[N.BATCH_STATS])

        return predict

    def eval_predict(self, genotype):
        decoder = Decoder(genotype, self.settings)

        def predict(variables, feats, size, plan):
            logits, _ = eval_forward(decoder, variables, feats)
            return resize_bilinear(logits, size)

        return predict


class UniversalPrograms:
    """``DecoderProgram`` over the universal decoder: one key for every genotype, which comes as the plan.

    ``task``: segmentation's stage 2 scores the output on its level's canvas against labels padded with IGNORE;
    a task with an ``output_stride`` (pose) gets its output and aux outputs resized from their levels to that
    stride (as stage 1 resizes them to l1, and as ``fdn.train``'s model upsamples coarser outputs)."""

    universal = True

    def __init__(self, settings: DecoderSettings, expand_first_block: bool = True, task: str = tasks.SEGMENTATION):
        self.settings = settings
        self.expand_first_block = expand_first_block
        self.task = task
        self.decoder = UniversalDecoder(settings)
        self.layout = self.decoder.layout
        self._any = G.released("arch0")  # any genotype gives the (genotype-independent) universal shapes
        self._abstract: dict = {}

    def key(self, genotype):
        return "universal"

    def plan(self, genotype):
        return {k: placement.put(v) for k, v in make_plan(genotype, self.settings.aux_cell).items()}

    def abstract(self, genotype, feature_shapes):
        key = tuple(tuple(s) for s in feature_shapes)
        if key not in self._abstract:  # the same for every genotype: built once per feature shapes
            self._abstract[key] = self.layout.abstract(
                ordinary_abstract(self._any, self.settings, feature_shapes), self._any
            )
        return self._abstract[key]

    def ordinary_abstract(self, genotype, feature_shapes):
        """Read off the universal layout: ``from_universal`` applied to zero-stride numpy views of the universal
        shapes (slicing only, ~ms) instead of tracing the ordinary decoder's init (~0.25 s per new genotype,
        ~5% of a demo candidate). ``tests/test_universal.py`` checks it equals ``ordinary_abstract``."""
        views = jax.tree.map(lambda s: np.broadcast_to(np.float32(0), s.shape), self.abstract(genotype, feature_shapes))
        ordinary = self.layout.from_universal(views, genotype)
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32), ordinary)

    def to_program(self, variables, genotype):
        return placement.put_tree(self.layout.to_universal(variables, genotype))

    def to_ordinary(self, variables, genotype):
        return self.layout.from_universal(variables, genotype)

    def stage1_predict(self, genotype=None):
        dec = self.decoder

        def predict(params, batch_stats, feats, size, plan):
            geom = Geometry.of(feats)
            logits, level, aux, new = dec.apply(
                {N.PARAMS: params, N.BATCH_STATS: batch_stats}, feats, plan, train=True, with_aux=True
            )
            out = resize_from_level(logits, level, size, geom)
            return out, [resize_from_level(a, plan["block_level"][b], size, geom) for b, a in enumerate(aux)], new

        return predict

    def stage2_predict(self, genotype=None):
        dec = self.decoder
        encoder = MobileNetV2Encoder(self.expand_first_block)
        stride = tasks.get(self.task).output_stride

        def predict(params, batch_stats, images, labels, plan):
            feats, upd = encoder.apply(
                {N.PARAMS: params[N.ENCODER], N.BATCH_STATS: batch_stats[N.ENCODER]},
                images,
                True,
                mutable=[N.BATCH_STATS],
            )
            geom = Geometry.of(feats)
            logits, level, aux, new = dec.apply(
                {N.PARAMS: params[N.DECODER], N.BATCH_STATS: batch_stats[N.DECODER]},
                feats,
                plan,
                train=True,
                with_aux=True,
            )
            stats = {N.ENCODER: upd[N.BATCH_STATS], N.DECODER: new}
            if stride is not None:
                size = tuple(-(-int(s) // stride) for s in images.shape[1:3])
                aux = [resize_from_level(a, plan["block_level"][b], size, geom) for b, a in enumerate(aux)]
                return resize_from_level(logits, level, size, geom), labels, aux, stats
            h0, w0 = geom.canvas
            per_level = jnp.stack(
                [
                    jnp.pad(resize_nearest(labels, s), ((0, 0), (0, h0 - s[0]), (0, w0 - s[1])), constant_values=IGNORE)
                    for s in geom.sizes
                ]
            )
            small = jax.lax.dynamic_index_in_dim(per_level, level, keepdims=False)
            aux = [resize_levels(a, plan["block_level"][b], level, geom) for b, a in enumerate(aux)]
            return logits, small, aux, stats

        return predict

    def eval_predict(self, genotype=None):
        dec = self.decoder

        def predict(variables, feats, size, plan):
            logits, level, _, _ = dec.apply(variables, feats, plan, train=False, with_aux=False)
            return resize_from_level(logits, level, size, Geometry.of(feats))

        return predict


def make_programs(
    kind: str,
    settings: DecoderSettings,
    expand_first_block: bool = True,
    task: str = tasks.SEGMENTATION,
    precision: str = precision_lib.FLOAT32,
) -> DecoderProgram:
    """``'universal'`` or ``'per_genotype'`` (see the module docstring; `resolve_kind` makes ``'auto'`` one of them),
    for ``task`` (segmentation or pose), computing in ``precision`` (`fdn.candidate.precision`: ``'float32'``, or
    ``'bfloat16'`` activations on float32 weights)."""
    precision_lib.check(precision)
    if kind == UNIVERSAL:
        return precision_lib.mixed(UniversalPrograms(settings, expand_first_block, task), precision)
    if kind == PER_GENOTYPE:
        return precision_lib.mixed(OrdinaryPrograms(settings, expand_first_block, task), precision)
    raise ProgramsError(f"candidate.programs must be 'universal' or 'per_genotype' here, got {kind!r}")

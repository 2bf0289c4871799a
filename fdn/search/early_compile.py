"""The search's programs compiled during its set-up: the universal stage programs need shapes alone, so they
compile in a thread (``fdn.candidate.compiled.BackgroundCompile``) while the data is read, the encoder calibrated and
the teacher trained, instead of after all of that (the demo's cold start: README). The first trainer adopts the
table when its real shapes equal the abstract ones (`fdn.search.setup.build`).
"""

from __future__ import annotations

import contextlib

from fdn import genotype as gt
from fdn.candidate import programs
from fdn.candidate.cache import abstract_stage1_cache
from fdn.candidate.compiled import STAGES


@contextlib.contextmanager
def stopped_on_error(early):
    """Waits for the set-up's compile thread when set-up fails: XLA must not be compiling when the process ends."""
    try:
        yield
    except BaseException:
        if early is not None:
            early.stop()
        raise


def start(config, cc, trainer_factory, encoder_apply, enc_vars, val, device, num_classes: int, task: str):
    """Starts compiling the search's universal programs from shapes alone (``trainer_factory.compile_early``, the
    real trainer's), or None: with ``compile_during_setup`` off, per-genotype programs (a genotype of their own
    each; ``cc.programs`` is concrete here, `fdn.search.setup.resolve_programs`) or a factory without the hook. What
    it compiles is the same program the first candidate would."""
    hook = getattr(trainer_factory, "compile_early", None)
    if hook is None or not config.compile_during_setup or cc.programs != programs.UNIVERSAL:
        return None
    abstract = abstract_stage1_cache(
        encoder_apply,  # the function the real cache is built with
        enc_vars,
        cc.stage1.num_examples,
        cc.stage1.crop_size,
        num_classes,
        with_teacher=config.teacher.kind != "none",
        feature_dtype=cc.stage1.feature_dtype,
        task=task,
    )
    stages = STAGES if config.max_stage >= 2 else ("stage1", "eval")
    return hook(
        cc,
        num_classes,
        enc_vars,
        abstract,
        val,
        gt.parse("arch0"),  # any genotype: the universal program is one for all
        expand_first_block=config.encoder.expand_first_block,
        device=device,
        stages=stages,
    )

"""What the search loop may rely on from whatever trains its candidates: the declared contract.

The loop (`fdn.search.loop`) gets a ``TrainerFactory`` (the real one is ``fdn.candidate.CandidateTrainer``; the
search tests pass ``tests.fake_candidate.CandidateTrainer``) and then talks to the trainer it builds only
through ``Trainer``: ``precompile`` / ``stage1`` / ``stage2`` returning ``StageResult`` and raising
``CandidateFailure``. Everything else (program keys, the compile table, how many steps a stage runs) stays
inside the trainer, which is why a result carries its own ``steps``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from fdn.models import names as N

MAX_REASON = 300  # characters of a failure reason kept in the run log


class CandidateFailure(RuntimeError):
    """A candidate that cannot be scored (NaN/Inf loss, out of memory, compile error); ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def failure_reason(err: BaseException, what: str | None = None) -> str:
    """One line saying why a candidate failed, for the run log.

    A ``CandidateFailure`` already carries its reason. Any other error is named by its type and first line;
    with ``what`` (the trainer, which knows the phase) it says where, and an out-of-memory error says so
    first, since that is the one a user can act on (smaller batch or crop).
    """
    if isinstance(err, CandidateFailure) and err.reason:
        return str(err.reason).splitlines()[0][:MAX_REASON]
    if what is None:
        reason = f"{type(err).__name__}: {err}"
        return reason.splitlines()[0][:MAX_REASON]
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "RESOURCE_EXHAUSTED" in str(err) or isinstance(err, MemoryError):
        return f"out of memory in {what}: {text[:MAX_REASON]}"
    return f"{what} failed: {type(err).__name__}: {text[:MAX_REASON]}"


@dataclasses.dataclass
class StageResult:
    """One stage of one candidate: its reward and what the search logs about it.

    ``steps`` is the number of training steps the stage ran (the trainer knows its schedule; the loop only
    divides by ``seconds['train']`` for the steps/s it logs). ``encoder_variables`` and
    ``decoder_program_variables`` are what stage 2 starts from, the decoder in the trainer's own program
    layout; ``to_ordinary`` maps that layout to the ordinary decoder's.
    """

    reward: float
    metrics: dict  # miou, macc, fwiou, reward
    params_total: int
    params_without_aux: int
    seconds: dict  # compile (waited for in this call), train, eval, input_wait (part of train), total
    steps: int
    encoder_variables: dict  # {'params', 'batch_stats'} of the encoder
    decoder_program_variables: dict
    to_ordinary: Callable = dataclasses.field(repr=False)  # program layout -> the ordinary decoder's

    @functools.cached_property
    def variables(self) -> dict:
        """Full segmenter variables {'params': {encoder, decoder}, 'batch_stats': {...}} in the ordinary layout.

        Converted on first use only: from the universal layout that is hundreds of slices (~0.7 s on the
        2-core CPU), which the search itself never needs.
        """
        dec = self.to_ordinary(self.decoder_program_variables)
        return {k: {N.ENCODER: self.encoder_variables[k], N.DECODER: dec[k]} for k in (N.PARAMS, N.BATCH_STATS)}

    @property
    def steps_per_second(self) -> float | None:
        """Training steps per second of this stage (None when it trained nothing or took no time)."""
        train = float(self.seconds.get("train", 0.0))
        return round(self.steps / train, 2) if self.steps and train > 0 else None


@runtime_checkable
class Trainer(Protocol):
    """Trains and scores candidates for one search; every method may raise ``CandidateFailure``."""

    def precompile(self, genotype) -> dict:
        """Compile ``genotype``'s programs now (from a thread, while another candidate trains)."""

    def stage1(self, genotype, key) -> StageResult:
        """Decoder-only training on the stage-1 cache, then the meta-val reward."""

    def stage2(self, genotype, stage1_result: StageResult, key) -> StageResult:
        """End-to-end training from ``stage1_result``, then the meta-val reward."""


@runtime_checkable
class TrainerFactory(Protocol):
    """Builds the search's trainer once all it needs is ready (``fdn.search.setup.build``).

    ``config`` is the search config's ``candidate`` block; ``encoder_variables`` the encoder every candidate
    starts from, in the layout ``expand_first_block`` names; ``stage1_cache`` from
    ``fdn.candidate.build_stage1_cache``; ``train_batches() -> iterator`` the stage-2 stream; ``val_batches``
    the meta-val batches; ``device`` the one device its inputs are committed to (None: the default device,
    nothing committed), one trainer per search worker (`fdn.search.parallel`).
    """

    def __call__(
        self,
        config,
        num_classes: int,
        encoder_variables,
        stage1_cache,
        train_batches: Callable[[], Iterable[dict]] | None,
        val_batches: Iterable[dict],
        *,
        expand_first_block: bool = True,
        device=None,
    ) -> Trainer: ...

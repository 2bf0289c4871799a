"""One candidate's two-stage training and evaluation (paper.md 3.2-3.5), fast.

Public API::

    default_config()                                   # every hyper-parameter, paper defaults
    build_stage1_cache(encoder_apply, encoder_variables, batches, teacher_fn=None, feature_dtype=..., task=...)
    trainer = CandidateTrainer(config, num_classes, encoder_variables, cache, train_batches, val_batches,
                               expand_first_block=True)
    trainer.precompile(genotype)                       # from a thread, while another candidate trains
    r1 = trainer.stage1(genotype, key)                 # StageResult: variables, reward, metrics, seconds, steps
    r2 = trainer.stage2(genotype, r1, key)
    CandidateFailure(reason)                           # NaN/Inf loss, OOM, compile error

The cache's ``task`` (`fdn.tasks`: 'segmentation', the paper's reward, or 'pose', PCK@0.5 of stride-4 heatmaps)
decides the trainer's loss terms, evaluation sums and reward. What the search may rely on (``Trainer``,
``TrainerFactory``, ``StageResult``) is declared in ``fdn.candidate.protocol``; ``CandidateTrainer`` implements it
and is the search's default factory.
"""

from fdn.candidate.cache import Stage1Cache, build_stage1_cache
from fdn.candidate.config import default_config
from fdn.candidate.protocol import CandidateFailure, StageResult, Trainer, TrainerFactory
from fdn.candidate.trainer import CandidateTrainer, enable_compilation_cache

__all__ = [
    "CandidateFailure",
    "CandidateTrainer",
    "Stage1Cache",
    "StageResult",
    "Trainer",
    "TrainerFactory",
    "build_stage1_cache",
    "default_config",
    "enable_compilation_cache",
]

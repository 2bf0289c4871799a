"""The search settings ``fdn.bench search`` measures, and how ``--steps_scale`` shortens them.

A preset is a search config (configs are the one source of every setting): ``paper`` = ``configs/voc.py``
(4,000 cached 256x256 crops, 310 stage-1 steps of batch 64, 297 stage-2 steps of batch 32 at 350x350,
1,024 meta-val images at 400x400 in batches of 64), ``demo`` = ``configs/demo.py``, ``tiny`` =
``configs/demo.py:tiny`` (32-pixel crops, agg 8: seconds, for tests).

``scale_steps`` shortens every stage by a factor while keeping what a step is (batch sizes, crops, decoder
width), so per-step figures measured on a short run hold for the full one: stage 1 keeps its epochs and runs
``max(1, round(steps_per_epoch * F))`` steps per epoch (the cache shrinks to that many batches); stage 2 runs
``max(1, round(steps_per_epoch * F))`` steps per epoch; meta-val keeps ``max(1, round(batches * F))`` full
batches. ``Schedule`` records both lengths so the bench can scale its measurements back up.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

from fdn.errors import UserError

PRESETS = {"paper": ("configs/voc.py", None), "demo": ("configs/demo.py", None), "tiny": ("configs/demo.py", "tiny")}


class PresetError(UserError, ValueError):
    """An unknown preset or an unusable ``--steps_scale``."""


def preset_config(name: str):
    """The search config of preset ``name`` (a fresh ConfigDict the caller may change)."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    path, arg = PRESETS[name]
    try:  # the configs are files of the repository, not of the installed package
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    except ModuleNotFoundError as err:
        raise PresetError(f"cannot import {path} ({err}); run from the repository root") from err
    return module.get_config(arg)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Steps / batches of each phase of one candidate: as the preset has them (``full_*``) and as run."""

    stage1_steps: int
    stage2_steps: int
    val_batches: int
    full_stage1_steps: int
    full_stage2_steps: int
    full_val_batches: int

    def ratio(self, phase: str) -> float:
        """How many times longer the full phase is than the measured one ('stage1', 'stage2', 'val')."""
        run, full = {
            "stage1": (self.stage1_steps, self.full_stage1_steps),
            "stage2": (self.stage2_steps, self.full_stage2_steps),
            "val": (self.val_batches, self.full_val_batches),
        }[phase]
        return full / run


def _scaled(count: int, factor: float) -> int:
    return max(1, round(count * factor))


VOC_TRAIN_AUG = 10582  # images in VOC+SBD train_aug: the size of the bench's data (synthetic or prepared)


def val_images(config) -> int:
    """Meta-val images the preset scores (``data.val_examples``; 0 = 10% of VOC's 10,582 train_aug images)."""
    return int(config.data.val_examples) or math.ceil(VOC_TRAIN_AUG * config.data.val_fraction)


def stage2_steps_per_epoch(config) -> int:
    """The preset's stage-2 steps per epoch as the search resolves them (0 = one pass over meta-train)."""
    from fdn.data.split import meta_split
    from fdn.search.setup import resolve_candidate_config

    meta_train, _ = meta_split(VOC_TRAIN_AUG, config.seed, config.data.val_fraction)
    return int(resolve_candidate_config(config.candidate, len(meta_train)).stage2.steps_per_epoch)


def scale_steps(config, factor: float) -> Schedule:
    """Shortens ``config`` (a search config, changed in place) by ``factor`` in (0, 1]; returns the schedule."""
    if not 0 < factor <= 1:
        raise PresetError(f"--steps_scale must be in (0, 1], got {factor}")
    s1, s2, val = config.candidate.stage1, config.candidate.stage2, config.candidate.val
    per_epoch1 = s1.num_examples // s1.batch_size
    if per_epoch1 < 1:
        raise PresetError(f"stage 1 caches {s1.num_examples} crops, fewer than one batch of {s1.batch_size}")
    full_val = math.ceil(val_images(config) / val.batch_size)
    s2.steps_per_epoch = stage2_steps_per_epoch(config)
    full = (s1.epochs * per_epoch1, s2.epochs * s2.steps_per_epoch, full_val)

    run1, s2.steps_per_epoch = _scaled(per_epoch1, factor), _scaled(s2.steps_per_epoch, factor)
    s1.num_examples = run1 * s1.batch_size
    run_val = _scaled(full_val, factor)
    config.data.val_examples = run_val * val.batch_size
    return Schedule(s1.epochs * run1, s2.epochs * s2.steps_per_epoch, run_val, *full)

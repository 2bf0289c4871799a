"""The official PyTorch stage-1 step, from the user's own checkout, for ``fdn.bench stage1 --official_repo=DIR``.

Why: issue #12's acceptance is fdn's stage-1 step *side by side* with the official one on the same CPU, and the
2-core CI machine is shared, so absolute figures drift by 2x between minutes; only steps timed in the same
process, alternately, give a ratio worth reading. fdn ships none of the official code: ``DIR`` is a checkout of
DrSleep/nas-segm-pytorch (the folder holding ``src/``, tested at 5de0c5c) and its modules are imported from there.

What one call is (as ``shared/reference/official-baseline.md`` timed it): ``engine.trainer.train_task0`` on a
cache of exactly one batch, so the call is one step with its shuffle and feature gather; ``MicroDecoder`` at
PyTorch's default init with fdn's search settings (agg size, aux cells, repeats); ``NLLLoss(ignore_index=255)``,
``MSELoss`` for KD, ``Adam(lr, weight_decay)``, the clip, aux weight and Polyak decay from fdn's stage-1 config;
inputs are the very arrays fdn's step gets, moved to NCHW. torch is optional: without it the caller skips.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import warnings

import numpy as np

from fdn.conventions import IGNORE_LABEL
from fdn.errors import UserError


class OfficialRepoError(UserError, ValueError):
    """``--official_repo`` does not point at a usable checkout of the official code."""


_MODULES = ("engine.trainer", "nn.micro_decoders", "helpers.utils")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def check_repo(repo: str) -> str:
    """The checkout's ``src`` folder; a one-line user error where it has no ``src/engine/trainer.py``."""
    src = os.path.join(os.path.abspath(repo), "src")
    if not os.path.isfile(os.path.join(src, "engine", "trainer.py")):
        raise OfficialRepoError(
            f"--official_repo={repo}: no src/engine/trainer.py there; pass a checkout of DrSleep/nas-segm-pytorch"
        )
    return src


def _import(repo: str) -> dict:
    src = check_repo(repo)
    sys.path.insert(0, src)
    try:
        mods = {name: importlib.import_module(name) for name in _MODULES}
    finally:
        sys.path.remove(src)
    for name, mod in mods.items():  # a same-named package imported earlier would shadow the checkout's
        if not os.path.abspath(mod.__file__).startswith(src):
            raise OfficialRepoError(f"--official_repo: module {name!r} came from {mod.__file__}, not from {src}")
    return mods


def make_step(repo, genotype, settings, cfg, feats, labels, teacher, threads: int):
    """A zero-argument callable running one official stage-1 step on ``feats`` (NHWC), ``labels`` and
    ``teacher`` (NHWC logits); the arrays are fdn's, converted once here. Also returns the decoder's size."""
    import torch

    torch.set_num_threads(threads)
    mods = _import(repo)
    train_task0 = mods["engine.trainer"].train_task0
    nchw = [torch.from_numpy(np.ascontiguousarray(np.asarray(f, np.float32).transpose(0, 3, 1, 2))) for f in feats]
    decoder = mods["nn.micro_decoders"].MicroDecoder(
        inp_sizes=[int(f.shape[1]) for f in nchw],
        num_classes=settings.num_classes,
        config=genotype.to_list(),
        agg_size=settings.agg_size,
        aux_cell=settings.aux_cell,
        repeats=settings.repeats,
    )
    segmenter = types.SimpleNamespace(module=types.SimpleNamespace(decoder=decoder))  # nn.DataParallel's shape
    cache = dict(enumerate(nchw))
    cache["y"] = torch.from_numpy(np.asarray(labels).astype(np.int64))
    cache["kd_y"] = torch.from_numpy(np.ascontiguousarray(np.asarray(teacher, np.float32).transpose(0, 3, 1, 2)))
    cache["out_size"] = torch.Size(labels.shape[1:3])
    optim = torch.optim.Adam(decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    avg = mods["helpers.utils"].init_polyak(True, decoder)
    segm_crit, kd_crit = torch.nn.NLLLoss(ignore_index=IGNORE_LABEL), torch.nn.MSELoss()
    batch = int(labels.shape[0])

    def step():
        with warnings.catch_warnings():  # its deprecated torch calls warn on every step
            warnings.simplefilter("ignore")
            out = train_task0(
                cache, segmenter, optim, 0, segm_crit, kd_crit, batch, False, True, cfg.kd_weight, cfg.grad_clip,
                True, avg_param=avg, polyak_decay=cfg.polyak_decay, aux_weight=cfg.aux_weight,
            )  # fmt: skip
        if out is not None:  # its try_except turns a RuntimeError into a silent 0
            raise RuntimeError("the official train_task0 failed (its RuntimeError was swallowed)")

    params = sum(p.numel() for p in decoder.parameters())
    return step, params

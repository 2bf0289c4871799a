"""The knowledge-distillation teacher of stage 1: none, an fdn checkpoint, or a store of precomputed logits.

The paper's teacher (RefineNet-LW-152 on VOC) is no longer published, so the teacher is a setting
(``config.teacher``):

* ``kind='none'``: no KD term (the cache holds no teacher logits);
* ``kind='checkpoint'``, ``path=DIR``: any fdn model checkpoint (`fdn.serve.checkpoint.save_model`), run in eval
  mode on the stage-1 crops;
* ``kind='logits'``, ``path=FILE.npy|.npz``: precomputed logits of the stage-1 crops, in their order
  (``(N, h, w, K)`` float, any resolution; an ``.npz`` holds them under ``logits``), for teachers fdn cannot
  run;
* ``kind='train'``: train a teacher once and cache it in ``WORKDIR/teacher`` (a checkpoint, reused on
  resume). The demo does this so that it exercises distillation: a wider fdn model (a fixed genotype at
  ``agg_size`` 64) trained end to end for a short while on meta-train, so it sees nothing of meta-val.

`make_teacher_fn` returns ``None`` or a function ``images (B, H, W, 3) -> logits (B, h, w, K)`` that the
stage-1 cache builder calls batch by batch in the order of the stage-1 crops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import numpy as np
import optax

from fdn import genotype as gt
from fdn import losses, placement, tasks
from fdn.errors import InputError
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.init import random_variables
from fdn.models.resize import resize_bilinear
from fdn.models.segmenter import ModelSpec, eval_forward
from fdn.serve import checkpoint as ckpt

KINDS = ("none", "checkpoint", "logits", "train")
TEACHER_DIR = "teacher"


def _forward_fn(spec: ModelSpec, variables) -> Callable:
    model = spec.build()
    forward = jax.jit(lambda v, x: eval_forward(model, v, x)[0])
    return lambda images: forward(variables, placement.put(images))


def _logits_store_fn(path: Path) -> Callable:
    """Serves the stored logits chunk by chunk, as many rows as each batch of images has."""
    if path.suffix == ".npz":
        with np.load(path) as store:
            if "logits" not in store:
                raise InputError(f"{path} holds no 'logits' array (found {sorted(store.files)})")
            logits = store["logits"]
    else:
        logits = np.load(path, mmap_mode="r")
    if logits.ndim != 4:
        raise InputError(f"teacher logits in {path} must be (N, h, w, K), got shape {logits.shape}")
    position = [0]

    def serve(images):
        n = len(images)
        start = position[0]
        if start + n > len(logits):
            raise InputError(
                f"{path} has logits for {len(logits)} stage-1 crops, the search needs more "
                f"(at least {start + n}); lower data.stage1_examples or store more"
            )
        position[0] = start + n
        return placement.put(logits[start : start + n], np.float32)

    return serve


def train_teacher(
    spec: ModelSpec,
    batches: Iterable[dict],
    steps: int,
    learning_rate: float,
    key,
    encoder_variables=None,
    log_every: int = 50,
) -> dict:
    """End-to-end training of ``spec`` (Adam, pixel-wise cross-entropy at the label size, 255 ignored).

    ``encoder_variables`` ({'params', 'batch_stats'} of an encoder) start the encoder when given. Deliberately
    plain: the teacher only has to be clearly better than a search candidate, and it is trained once.
    """
    model = spec.build()
    it = iter(batches)
    variables = random_variables(spec, int(jax.random.randint(key, (), 0, 2**31 - 1)))
    if encoder_variables is not None:
        variables = {c: {**variables[c], N.ENCODER: encoder_variables[c]} for c in variables}
    tx = optax.chain(optax.clip_by_global_norm(3.0), optax.adam(learning_rate))
    opt_state = tx.init(variables[N.PARAMS])

    def loss_fn(params, batch_stats, images, labels):
        (logits, _), updates = model.apply(
            {N.PARAMS: params, N.BATCH_STATS: batch_stats}, images, train=True, with_aux=False, mutable=[N.BATCH_STATS]
        )
        return losses.nll(resize_bilinear(logits, labels.shape[1:3]), labels), updates[N.BATCH_STATS]

    @jax.jit
    def step(params, batch_stats, opt_state, images, labels):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, images, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    params, batch_stats = variables[N.PARAMS], variables[N.BATCH_STATS]
    start = time.time()
    for i in range(steps):
        batch = next(it)
        params, batch_stats, opt_state, loss = step(
            params,
            batch_stats,
            opt_state,
            placement.put(batch["image"]),
            placement.put(batch[tasks.SEGMENTATION], np.int32),
        )
        if log_every and (i + 1) % log_every == 0:
            print(f"teacher: step {i + 1}/{steps} loss {float(loss):.3f} ({time.time() - start:.0f} s)", flush=True)
    return {N.PARAMS: params, N.BATCH_STATS: batch_stats}


def teacher_spec(cfg, num_classes: int) -> ModelSpec:
    return ModelSpec(
        gt.parse(cfg.train.genotype), DecoderSettings(num_classes, cfg.train.agg_size, cfg.train.repeats, False)
    )


def make_teacher_fn(
    cfg, workdir: str | Path, num_classes: int, train_batches: Callable[[], Iterable[dict]], key, encoder_variables=None
) -> Callable | None:
    """The teacher function of ``cfg`` (a ``config.teacher``), training and caching it first if asked.

    ``train_batches()`` makes the training stream (only called when a teacher must be trained).
    """
    kind = cfg.kind
    if kind not in KINDS:
        raise InputError(f"teacher.kind must be one of {KINDS}, got {kind!r}")
    if kind == "none":
        return None
    if kind == "logits":
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"teacher logits store {path} does not exist (teacher.path)")
        return _logits_store_fn(path)
    if kind == "checkpoint":
        directory = Path(cfg.path).expanduser()
    else:
        directory = Path(cfg.path).expanduser() if cfg.path else Path(workdir) / TEACHER_DIR
        if not (directory / ckpt.SPEC_FILE).is_file():
            spec = teacher_spec(cfg, num_classes)
            print(
                f"teacher: training {spec.genotype} at agg {spec.decoder.agg_size} for {cfg.train.steps} steps "
                f"(once; cached in {directory})",
                flush=True,
            )
            start = time.time()
            init_encoder = encoder_variables if cfg.train.from_encoder else None
            variables = train_teacher(
                spec, train_batches(), cfg.train.steps, cfg.train.learning_rate, key, init_encoder
            )
            ckpt.save_model(
                directory,
                variables,
                spec,
                {"source": "fdn.search.teacher", "seconds": round(time.time() - start, 1)},
                overwrite=True,
            )
            return _forward_fn(spec, variables)
    spec, variables, _ = ckpt.load_model(directory)
    if spec.task != tasks.SEGMENTATION or spec.decoder.num_classes != num_classes:
        raise InputError(
            f"the teacher in {directory} predicts {spec.decoder.num_classes} {spec.task} channels; "
            f"the search needs {num_classes} segmentation classes"
        )
    return _forward_fn(spec, variables)

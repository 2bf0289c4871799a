"""Full training of one genotype (``python -m fdn.train``): read top to bottom, in banner sections.

Outputs in ``WORKDIR``: ``config.json``; ``checkpoints/`` (Orbax: the latest and the best full training state
with the data iterator; the same command resumes); ``best_model/`` and ``final_model/`` (fdn model checkpoints
of the Polyak-averaged weights, without auxiliary cells: ``fdn.predict``, ``fdn.evaluate``, ``fdn.export`` and
``fdn.convert`` read them); ``metrics.jsonl`` and ``tensorboard/`` (scalars).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from fdn import sharding, tasks
from fdn.data import catalog, pipeline
from fdn.errors import InputError
from fdn.models.decoder import DecoderSettings
from fdn.models.init import random_variables
from fdn.models.segmenter import ModelSpec
from fdn.serve import checkpoint as ckpt
from fdn.serve import evaluation, inference
from fdn.train import genotype_source
from fdn.train import step as train_step
from fdn.train.metric_writer import MetricWriter

BEST_MODEL, FINAL_MODEL, CHECKPOINTS = "best_model", "final_model", "checkpoints"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def export_variables(params, batch_stats) -> dict:
    """The inference model's variables: the auxiliary cells dropped (the auxiliary classifiers stay, as in the
    released checkpoints; ``param_counts``' ``without_aux`` leaves them out)."""
    def strip(tree):
        tree = jax.tree.map(np.asarray, dict(tree))
        dec = dict(tree["decoder"])
        for name in list(dec):
            if name.startswith("aux_clfs_"):
                dec[name] = {k: v for k, v in dec[name].items() if k != "aux_cell"}
                if not dec[name]:  # batch stats: nothing left (the classifier has none)
                    del dec[name]
        return {**tree, "decoder": dec}

    return {"params": strip(params), "batch_stats": strip(batch_stats)}


def save_model_atomically(directory: Path, variables, spec, metadata) -> None:
    tmp = directory.with_name(directory.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    ckpt.save_model(tmp, variables, spec, metadata)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def run(config, workdir, *, log=print) -> dict:
    """Trains (or resumes) the run in ``workdir``; returns the last evaluation's metrics and the paths."""
    workdir = Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    main_process = jax.process_index() == 0
    task = config.task
    if task not in tasks.NAMES:
        raise InputError(f"config.task must be {' or '.join(tasks.NAMES)}, got {task!r}")
    rules = tasks.get(task)

    # ------------------------------------------------------------------------------------------- genotype
    genotype = genotype_source.resolve(config.genotype)
    num_classes = rules.head_size(rules.fixed_channels or config.model.num_classes
                                  or catalog.num_classes_of(config.data, workdir))
    settings = DecoderSettings(num_classes, config.model.agg_size, config.model.repeats, config.model.aux_cell)
    train_spec = ModelSpec(genotype, settings, task, config.model.expand_first_block)
    export_spec = dataclasses.replace(train_spec, decoder=dataclasses.replace(settings, aux_cell=False))
    if main_process:
        (workdir / "config.json").write_text(json.dumps({**config.to_dict(), "resolved_genotype": genotype.to_list()},
                                                        indent=2, default=str))

    # ------------------------------------------------------------------------------------------------ mesh
    mesh = sharding.make_mesh()
    sharding.check_batch(config.data.batch_size, mesh, "data.batch_size")
    sharding.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    repl = sharding.replicated(mesh)

    # ------------------------------------------------------------------------------------------------ data
    data_dir = catalog.resolve_data_dir(config.data, workdir)
    catalog.ensure_prepared(config.data, data_dir, log, "train")
    train_source = pipeline.data_source(config.data.name, config.data.train_split, data_dir)
    eval_source = pipeline.data_source(config.data.name, config.data.eval_split, data_dir)
    steps_per_epoch = int(config.optim.steps_per_epoch) or len(train_source) // config.data.batch_size
    if steps_per_epoch < 1:
        raise InputError(f"{config.data.name}/{config.data.train_split} has {len(train_source)} images, fewer than "
                         f"one batch of {config.data.batch_size}")
    total_steps = int(sum(config.optim.stage_epochs)) * steps_per_epoch
    crop = int(config.data.crop_size)
    train_iter = iter(pipeline.train_dataset(
        train_source, crop_size=crop, batch_size=config.data.batch_size, seed=config.seed,
        min_side=config.data.min_side or crop, scale_range=tuple(config.data.scale_range), task=task,
        worker_count=config.data.worker_count))

    def eval_batches():
        return evaluation.eval_batches(eval_source, crop_size=config.eval.crop_size, min_side=config.eval.min_side,
                                       batch_size=config.eval.batch_size, task=task,
                                       num_examples=config.eval.num_examples)

    # ------------------------------------------------------------------------------------ model, teacher
    variables = random_variables(train_spec, config.seed)
    if config.encoder.checkpoint:
        enc_spec, enc_vars, _ = ckpt.load_model(Path(config.encoder.checkpoint).expanduser())
        if enc_spec.expand_first_block != train_spec.expand_first_block:
            raise InputError(f"the encoder in {config.encoder.checkpoint} has expand_first_block="
                             f"{enc_spec.expand_first_block}; config.model says {train_spec.expand_first_block}")
        variables = {c: {**variables[c], "encoder": enc_vars[c]["encoder"]} for c in variables}
    teacher_model = teacher_vars = None
    if config.teacher.checkpoint:
        t_spec, teacher_vars, _ = ckpt.load_model(Path(config.teacher.checkpoint).expanduser())
        if t_spec.task != task or t_spec.decoder.num_classes != num_classes:
            raise InputError(f"the teacher in {config.teacher.checkpoint} predicts {t_spec.decoder.num_classes} "
                             f"{t_spec.task} channels; this run trains {num_classes} {task} channels")
        teacher_model = t_spec.build()
        teacher_vars = sharding.replicate(teacher_vars, mesh)
    model = train_spec.build()
    tx, (enc_lr, dec_lr) = train_step.make_optimizer(config.optim, variables["params"], genotype, steps_per_epoch,
                                                     config.data.batch_size)

    # --------------------------------------------------------------------------------------- state, resume
    state = train_step.init_state(tx, variables)
    checkpoints = ckpt.TrainCheckpoints(workdir / CHECKPOINTS)
    extra = {"best_score": None, "best_step": None}
    latest = checkpoints.latest_step()
    if latest is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=repl),
                                state)
        state, extra = checkpoints.restore(latest, abstract, train_iter)
        log(f"train: resumed from step {latest} in {checkpoints.directory}")
    else:
        state = sharding.replicate(state, mesh)
    start_step = int(state["step"])
    writer = MetricWriter(workdir, resume_step=start_step, enabled=main_process)

    # --------------------------------------------------------------------------------------- update steps
    step_fn = jax.jit(train_step.make_train_step(model, tx, config, teacher_model), donate_argnums=0,
                      out_shardings=(repl, repl))
    eval_fn = jax.jit(inference.make_eval_step(model, task, num_classes), out_shardings=repl)

    def check_finite(step):
        bad = int(state["bad_step"])
        if bad:
            checkpoints.wait()
            last = checkpoints.latest_step()
            raise NonFiniteLossError(
                f"the training loss became NaN/inf at step {bad} (checked at step {step}); nothing was saved "
                f"after it: the last good checkpoint is {'step ' + str(last) if last is not None else 'none'} in "
                f"{checkpoints.directory}. Lower the learning rates (config.optim.*_lrs) or check the data")

    def metadata(step, scores):
        return {"source": "fdn.train", "dataset": config.data.name, "train_split": config.data.train_split,
                "eval_split": config.data.eval_split, "data_dir": data_dir or "", "task": task, "step": step,
                "epoch": step / steps_per_epoch, "metrics": scores, "genotype_source": str(config.genotype),
                "class_names": catalog.class_names(config.data.name, num_classes, data_dir),
                "eval": {"crop_size": list(np.atleast_1d(config.eval.crop_size).tolist()),
                         "min_side": int(config.eval.min_side), "batch_size": int(config.eval.batch_size),
                         "omit_classes": list(config.eval.omit_classes)},
                "polyak_decay": float(config.polyak_decay)}

    def evaluate(step):
        polyak_vars = {"params": state["polyak"], "batch_stats": state["batch_stats"]}
        start = time.time()
        sums = evaluation.accumulate(eval_fn, polyak_vars, eval_batches(), mesh)
        scores = evaluation.summarise(task, sums, config.eval.omit_classes)
        scores["seconds"] = time.time() - start
        writer.write(step, "eval", scores)
        keys = rules.report_keys
        log(f"train: eval at step {step} (epoch {step / steps_per_epoch:.1f}): "
            + ", ".join(f"{k} {scores[k]:.4f}" for k in keys) + f" ({scores['seconds']:.1f} s, Polyak weights)")
        return scores

    def export(directory, step, scores):
        if main_process:
            save_model_atomically(directory, export_variables(state["polyak"], state["batch_stats"]), export_spec,
                                  metadata(step, scores))

    # ------------------------------------------------------------------------------------------ train loop
    from tqdm import tqdm

    log(f"train: {genotype} ({config.genotype}), {task}, {total_steps} steps = {sum(config.optim.stage_epochs)} "
        f"epochs x {steps_per_epoch}, global batch {config.data.batch_size} on {mesh.size} device(s) "
        f"({jax.device_count()} in {jax.process_count()} process(es)); workdir {workdir}")
    bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
               disable=not (config.progress and main_process))
    window, window_start, window_steps, first_step_seconds = None, time.time(), 0, None
    scores = extra.get("last_scores")
    every_eval = int(config.eval.every_epochs) * steps_per_epoch
    try:
        for step in range(start_step + 1, total_steps + 1):
            t0 = time.time()
            state, m = step_fn(state, sharding.shard_batch(next(train_iter), mesh), teacher_vars)
            window = m if window is None else jax.tree.map(lambda a, b: a + b, window, m)
            window_steps += 1
            if first_step_seconds is None:
                jax.block_until_ready(m)
                first_step_seconds = time.time() - t0
                window_start, window, window_steps = time.time(), None, 0
                log(f"train: first step (compile included) {first_step_seconds:.1f} s")
            bar.update(1)
            is_eval = step % every_eval == 0 or step == total_steps
            if window_steps and (step % config.log_every_steps == 0 or is_eval):
                check_finite(step)
                means = {k: float(v) / window_steps for k, v in jax.device_get(window).items()}
                means["seconds_per_step"] = (time.time() - window_start) / window_steps
                means["lr_encoder"], means["lr_decoder"] = float(enc_lr(step - 1)), float(dec_lr(step - 1))
                writer.write(step, "train", means)
                bar.set_postfix(loss=f"{means['loss']:.4f}")
                if not bar.disable:
                    bar.write(f"train: step {step}/{total_steps} epoch {step / steps_per_epoch:.2f} loss "
                              f"{means['loss']:.4f} ({means['seconds_per_step']:.3f} s/step)")
                else:
                    log(f"train: step {step}/{total_steps} loss {means['loss']:.4f} "
                        f"({means['seconds_per_step']:.3f} s/step)")
                window, window_start, window_steps = None, time.time(), 0
            if is_eval:
                check_finite(step)
                scores = evaluate(step)
                best = extra.get("best_score")
                if best is None or scores["score"] > best:
                    extra.update(best_score=scores["score"], best_step=step)
                    export(workdir / BEST_MODEL, step, scores)
                extra["last_scores"] = scores
                checkpoints.save(step, state, train_iter, dict(extra), score=scores["score"])
            elif config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                check_finite(step)
                checkpoints.save(step, state, train_iter, dict(extra))
        if start_step < total_steps or not (workdir / FINAL_MODEL).exists():
            check_finite(total_steps)
            export(workdir / FINAL_MODEL, total_steps, scores or {})
    finally:
        bar.close()
        checkpoints.wait()
        writer.close()
    return {"metrics": scores, "best_score": extra.get("best_score"), "best_step": extra.get("best_step"),
            "best_model": str(workdir / BEST_MODEL), "final_model": str(workdir / FINAL_MODEL),
            "steps": total_steps, "first_step_seconds": first_step_seconds,
            "start_step": start_step}

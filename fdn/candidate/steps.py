"""The pure functions a candidate runs: stage-1 and stage-2 steps, the whole stage-1 program, evaluation.

Everything here is a function of arrays only, so ``CandidateTrainer`` compiles each once ahead of time and
reuses it. The decoder enters through *predict* functions (``fdn.candidate.programs``): the ordinary decoder
(the genotype fixed in the closure: one compile per genotype) or the universal one (the genotype passed as
``plan``, a few small arrays: one compile for the whole search; ``None`` for the ordinary one). Parameters
travel as flat vectors (``fdn.candidate.flat``) so the optimiser and Polyak code is a few fused loops.

Stage 1 runs as *one* program: ``epochs`` x ``lax.scan`` over the steps of an epoch, the shuffle drawn on the
device, Polyak averaging every step and the write-back at every epoch end. One compile covers all of it (the
scan body is compiled once), and the host waits on nothing until it is over.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fdn import losses, polyak, tasks
from fdn.metrics import confusion_matrix
from fdn.models import names as N

BERHU_THRESHOLD = 0.2  # unused by the search's tasks (segmentation, pose); ``loss_terms`` takes one for depth


# ------------------------------------------------------------------------------------------------ stage 1
def task_terms(task: str, logits, aux, targets) -> dict:
    """The task's ``main`` and ``aux`` terms (`fdn.tasks` ``loss_terms``: the same rule as ``fdn.train``'s step)
    for outputs already at the targets' resolution; ``targets`` is the task's label array (segmentation labels,
    pose keypoints). ``aux`` is always present: the search trains the auxiliary heads."""
    t = tasks.get(task)
    return t.loss_terms(logits, aux, {t.label_key: targets}, BERHU_THRESHOLD)


def stage1_loss(predict, params, batch_stats, feats, labels, teacher, plan, cfg, task=tasks.SEGMENTATION):
    """Loss of one stage-1 batch at the l1 resolution (1/4 of the crop: pose's heatmap stride too): the task's
    main term + kd * MSE + aux * the aux heads' terms.

    Segmentation keeps the paper's NLL parts, per aux head, as the parity tests compare them with the official
    code (``parts``: ``nll``, ``kd``, ``aux`` (3,)); other tasks take `task_terms` (``parts``: ``main``, ``kd``,
    ``aux`` summed over the heads). ``predict(params, batch_stats, feats, size, plan) -> (logits, aux_logits,
    new_batch_stats)``, every output bilinearly resized to ``size`` (train mode). Returns ``(loss, (parts,
    new_batch_stats))``.
    """
    size = labels.shape[1:3] if task == tasks.SEGMENTATION else feats[0].shape[1:3]
    out, aux, new_stats = predict(params, batch_stats, list(feats), size, plan)
    if task == tasks.SEGMENTATION:
        main = losses.nll(out, labels)
        aux_parts = jnp.stack([losses.nll(a, labels) for a in aux])
        loss = main + cfg.aux_weight * jnp.sum(aux_parts)
        parts = {"nll": main, "aux": aux_parts}
    else:
        terms = task_terms(task, out, aux, labels)
        loss = terms["main"] + cfg.aux_weight * terms["aux"]
        parts = dict(terms)
    kd = jnp.zeros((), jnp.float32)
    if teacher is not None:
        kd = losses.kd_mse(out, teacher)
        loss = loss + cfg.kd_weight * kd
    return loss, ({**parts, "kd": kd}, new_stats)


def stage1_step(predict, tx, flattener, cfg, state, feats, labels, teacher, plan=None, task=tasks.SEGMENTATION):
    """One optimiser step + Polyak update. ``state`` = {params (flat vector), batch_stats, opt_state, avg}."""

    # Differentiate w.r.t. the tree and concatenate the gradients: the transpose of unflatten's slices would
    # be one full-length pad per leaf.
    grad_fn = jax.value_and_grad(stage1_loss, argnums=1, has_aux=True)
    (loss, (parts, batch_stats)), grads = grad_fn(
        predict, flattener.unflatten(state[N.PARAMS]), state[N.BATCH_STATS], feats, labels, teacher, plan, cfg, task
    )
    grads = flattener.flatten(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state[N.PARAMS])
    params = state[N.PARAMS] + updates
    avg = polyak.update(state["avg"], params, cfg.polyak_decay)
    metrics = dict(parts, loss=loss, grad_norm=optax.tree.norm(grads))
    return {N.PARAMS: params, N.BATCH_STATS: batch_stats, "opt_state": opt_state, "avg": avg}, metrics


def init_state(tx, flat_params, batch_stats):
    return {
        N.PARAMS: flat_params,
        N.BATCH_STATS: batch_stats,
        "opt_state": tx.init(flat_params),
        "avg": polyak.init(flat_params),
    }


def make_stage1_program(
    predict, tx, flattener, cfg, *, num_examples: int, batch_size: int, epochs: int, task: str = tasks.SEGMENTATION
):
    """``program(state, key, feats, labels, teacher_or_None, plan) -> (state, losses (epochs, steps))``.

    Each epoch draws a fresh permutation of the cache on the device and drops the remainder
    (``num_examples // batch_size`` steps), as the official ``train_task0``; the Polyak averages are written
    back at every epoch end.
    """
    steps = num_examples // batch_size

    def program(state, key, feats, labels, teacher, plan=None):
        def step(state, idx):
            batch_feats = [jnp.take(f, idx, axis=0).astype(jnp.float32) for f in feats]
            batch_teacher = None if teacher is None else jnp.take(teacher, idx, axis=0).astype(jnp.float32)
            batch_labels = jnp.take(labels, idx, axis=0)
            state, metrics = stage1_step(
                predict, tx, flattener, cfg, state, batch_feats, batch_labels, batch_teacher, plan, task
            )
            return state, metrics["loss"]

        def epoch(state, epoch_key):
            order = jax.random.permutation(epoch_key, num_examples)[: steps * batch_size]
            state, epoch_losses = jax.lax.scan(step, state, order.reshape(steps, batch_size))
            return end_epoch(state), epoch_losses

        return jax.lax.scan(epoch, state, jax.random.split(key, epochs))

    return program


def end_epoch(state):
    """Polyak write-back at an epoch end (parameters only; BN statistics keep their live values)."""
    out = dict(state)
    for name, avg_name in ((N.PARAMS, "avg"), ("enc", "avg_enc"), ("dec", "avg_dec")):
        if name in state:
            out[name] = polyak.write_back(state[avg_name], state[name])
    return out


# ------------------------------------------------------------------------------------------------ stage 2
def stage2_loss(predict, params, batch_stats, images, labels, plan, cfg, task=tasks.SEGMENTATION):
    """The main term at the output resolution + aux * the aux heads' terms (aux outputs bilinearly resized to the
    output size); segmentation: NLL with the labels nearest-downsampled to it (the paper's), other tasks:
    `task_terms` (pose: heatmaps rendered at stride 4). No distillation in stage 2.

    ``predict(params, batch_stats, images, labels, plan) -> (logits, labels at their size, aux logits at
    that size, new_batch_stats)`` (train mode)."""
    logits, small, aux, new_stats = predict(params, batch_stats, images, labels, plan)
    if task != tasks.SEGMENTATION:
        terms = task_terms(task, logits, aux, small)
        return terms["main"] + cfg.aux_weight * terms["aux"], (terms, new_stats)
    main = losses.nll(logits, small)
    aux_parts = jnp.stack([losses.nll(a, small) for a in aux])
    loss = main + cfg.aux_weight * jnp.sum(aux_parts)
    return loss, ({"nll": main, "aux": aux_parts}, new_stats)


def stage2_step(
    predict, tx_enc, tx_dec, flat_enc, flat_dec, cfg, state, images, labels, plan=None, task=tasks.SEGMENTATION
):
    """One end-to-end step. ``state`` = {enc, dec (flat vectors), batch_stats, opt_enc, opt_dec, avg_enc,
    avg_dec}; encoder and decoder are clipped and updated by their own optimisers."""

    params = {N.ENCODER: flat_enc.unflatten(state["enc"]), N.DECODER: flat_dec.unflatten(state["dec"])}
    grad_fn = jax.value_and_grad(stage2_loss, argnums=1, has_aux=True)
    (loss, (_, batch_stats)), grads = grad_fn(predict, params, state[N.BATCH_STATS], images, labels, plan, cfg, task)
    g_enc, g_dec = flat_enc.flatten(grads[N.ENCODER]), flat_dec.flatten(grads[N.DECODER])
    u_enc, opt_enc = tx_enc.update(g_enc, state["opt_enc"], state["enc"])
    u_dec, opt_dec = tx_dec.update(g_dec, state["opt_dec"], state["dec"])
    enc, dec = state["enc"] + u_enc, state["dec"] + u_dec
    return {
        "enc": enc,
        "dec": dec,
        N.BATCH_STATS: batch_stats,
        "opt_enc": opt_enc,
        "opt_dec": opt_dec,
        "avg_enc": polyak.update(state["avg_enc"], enc, cfg.polyak_decay),
        "avg_dec": polyak.update(state["avg_dec"], dec, cfg.polyak_decay),
    }, loss


def init_stage2_state(tx_enc, tx_dec, enc, dec, batch_stats):
    return {
        "enc": enc,
        "dec": dec,
        N.BATCH_STATS: batch_stats,
        "opt_enc": tx_enc.init(enc),
        "opt_dec": tx_dec.init(dec),
        "avg_enc": polyak.init(enc),
        "avg_dec": polyak.init(dec),
    }


# ------------------------------------------------------------------------------------------------ eval
def decoder_confusion(predict, num_classes: int, variables, feats, labels, valid, cm, plan=None):
    """``cm`` + the confusion matrix of one batch: eval-mode decoder (no aux heads), prediction bilinearly
    resized to the label size (``predict(variables, feats, size, plan)`` does both), argmax; padding slots
    (``valid`` False) and labels >= K are skipped."""
    logits = predict(variables, [f.astype(jnp.float32) for f in feats], labels.shape[1:3], plan)
    pred = jnp.argmax(logits, axis=-1)
    return cm + confusion_matrix(pred, labels, num_classes, valid)


def decoder_eval_sums(predict, task: str, num_classes: int, variables, feats, batch, sums, plan=None):
    """``sums`` + the task's evaluation sums of one batch (`fdn.tasks` ``eval_sums``; a task other than
    segmentation, whose confusion matrix is ``decoder_confusion``): the eval-mode decoder's outputs bilinearly
    resized to the l1 resolution (stride 4: pose's heatmaps), padding slots skipped by ``batch['valid']``."""
    f32 = [f.astype(jnp.float32) for f in feats]
    logits = predict(variables, f32, f32[0].shape[1:3], plan)
    new = tasks.get(task).eval_sums(logits, batch, num_classes)
    return jax.tree.map(jnp.add, sums, new)

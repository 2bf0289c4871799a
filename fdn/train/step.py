"""The final-training step: losses, optimiser, Polyak average, non-finite guard.

Losses follow the search's stage 2 and Light-Weight RefineNet: the task's terms (`fdn.tasks`: the main output
against labels nearest-downsampled to its resolution, NLL or berHu, and the auxiliary heads upsampled to it
when ``aux_weight > 0``) plus an optional teacher's outputs bilinearly resized to it for the MSE distillation
term. The evaluation step is serving's (`fdn.serve.inference.make_eval_step`), shared with ``fdn.evaluate``.

The train state is a dict ``{step, params, batch_stats, opt_state, polyak, bad_step}``. A step whose loss is
not finite changes nothing and records its (1-based) number in ``bad_step``; later steps are no-ops too, so
the host can check ``bad_step`` whenever it likes (before logging, evaluating or saving) and stop with the
exact step, and no checkpoint ever holds a non-finite state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fdn import genotype as G
from fdn import losses, tasks
from fdn import polyak as polyak_lib
from fdn.errors import InputError
from fdn.models import names as N
from fdn.models import trainable
from fdn.models.resize import resize_bilinear
from fdn.models.segmenter import eval_forward
from fdn.models.trainable import FROZEN

# ------------------------------------------------------------------------------------------------ optimiser
# ``config.optim.optimizer``: RF-LW's SGD with momentum, or Adam (SimpleBaseline's pose schedule: 1e-3, x0.1 at
# epochs 90 and 120, no weight decay) on the same per-stage learning rates.
SGD, ADAM = "sgd", "adam"


def param_labels(params, genotype: G.Genotype):
    """``encoder`` / ``decoder`` per parameter, ``frozen`` for what gets no gradient in this genotype (the
    adapters of unused encoder outputs, the encoder layers after the deepest output in use): PyTorch's SGD
    leaves those untouched, while a zero gradient here would still decay them (`fdn.models.trainable`)."""
    return trainable.segmenter_labels(params, genotype)


def lr_schedules(optim, steps_per_epoch: int, batch_size: int):
    """``(encoder, decoder)`` piecewise-constant schedules of ``optim`` (stage_epochs, enc_lrs, dec_lrs)."""
    scale = batch_size / optim.reference_batch if optim.scale_lr_with_batch else 1.0
    bounds, total = [], 0
    for epochs in list(optim.stage_epochs)[:-1]:
        total += int(epochs) * steps_per_epoch
        bounds.append(total)

    def schedule(name):
        lrs = optim[name]
        if len(lrs) != len(optim.stage_epochs):
            raise InputError(
                f"config.optim.{name} has {len(lrs)} learning rates for {len(optim.stage_epochs)} stages "
                "(config.optim.stage_epochs); give one per stage"
            )
        return optax.join_schedules([optax.constant_schedule(float(lr) * scale) for lr in lrs], bounds)

    return schedule("enc_lrs"), schedule("dec_lrs")


def make_optimizer(optim, params, genotype: G.Genotype, steps_per_epoch: int, batch_size: int):
    enc_lr, dec_lr = lr_schedules(optim, steps_per_epoch, batch_size)

    kind = optim.get("optimizer", SGD)
    if kind not in (SGD, ADAM):
        raise InputError(f"config.optim.optimizer must be {SGD!r} or {ADAM!r}, got {kind!r}")

    def make(lr):
        inner = optax.sgd(lr, momentum=optim.momentum) if kind == SGD else optax.adam(lr)
        return trainable.clipped_l2(optim.grad_clip, optim.weight_decay, inner)

    tx = optax.multi_transform(
        {N.ENCODER: make(enc_lr), N.DECODER: make(dec_lr), FROZEN: optax.set_to_zero()}, param_labels(params, genotype)
    )
    return tx, (enc_lr, dec_lr)


def init_state(tx, variables) -> dict:
    params = variables[N.PARAMS]
    return {
        "step": jnp.zeros((), jnp.int32),
        N.PARAMS: params,
        N.BATCH_STATS: variables[N.BATCH_STATS],
        "opt_state": tx.init(params),
        "polyak": polyak_lib.init(params),
        "bad_step": jnp.zeros((), jnp.int32),
    }


# ------------------------------------------------------------------------------------------------ losses
def loss_terms(task: str, logits, aux, batch, teacher_logits=None, berhu_threshold: float = 0.2) -> dict:
    """The task's terms (``main``, ``aux``; `fdn.tasks`) plus ``kd``, the MSE to a teacher's outputs bilinearly
    resized to the student's resolution (the same for every task)."""
    terms = tasks.get(task).loss_terms(logits, aux, batch, berhu_threshold)
    if teacher_logits is not None:
        size = logits.shape[1:3]
        terms["kd"] = losses.kd_mse(logits, resize_bilinear(teacher_logits.astype(jnp.float32), size))
    return terms


def make_train_step(model, tx, config, teacher_model=None):
    """``step(state, batch, teacher_variables) -> (state, measurements)``, to be jitted by the caller."""
    task, aux_weight, kd_weight = config.task, float(config.loss.aux_weight), float(config.teacher.weight)
    decay = float(config.polyak_decay)

    def loss_fn(params, batch_stats, batch, teacher_variables):
        (logits, aux), new = model.apply(
            {N.PARAMS: params, N.BATCH_STATS: batch_stats},
            batch["image"],
            train=True,
            with_aux=aux_weight > 0,
            mutable=[N.BATCH_STATS],
        )
        teacher_logits = None
        if teacher_model is not None:
            teacher_logits = jax.lax.stop_gradient(eval_forward(teacher_model, teacher_variables, batch["image"])[0])
        terms = loss_terms(task, logits, aux, batch, teacher_logits, config.loss.berhu_threshold)
        loss = terms["main"] + aux_weight * terms.get("aux", 0.0) + kd_weight * terms.get("kd", 0.0)
        return loss, (terms, new[N.BATCH_STATS])

    def step(state, batch, teacher_variables):
        (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state[N.PARAMS], state[N.BATCH_STATS], batch, teacher_variables
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state[N.PARAMS])
        params = optax.apply_updates(state[N.PARAMS], updates)
        ok = jnp.isfinite(loss) & (state["bad_step"] == 0)

        def keep(new, old):
            return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)

        new_state = {
            "step": state["step"] + 1,
            N.PARAMS: keep(params, state[N.PARAMS]),
            N.BATCH_STATS: keep(batch_stats, state[N.BATCH_STATS]),
            "opt_state": keep(opt_state, state["opt_state"]),
            "polyak": keep(polyak_lib.update(state["polyak"], params, decay), state["polyak"]),
            "bad_step": jnp.where((state["bad_step"] == 0) & ~jnp.isfinite(loss), state["step"] + 1, state["bad_step"]),
        }
        measurements = {"loss": loss, **{f"loss_{k}": v for k, v in terms.items()}, "grad_norm": optax.tree.norm(grads)}
        return new_state, measurements

    return step

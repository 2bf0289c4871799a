"""Training losses of the search and of depth training, with the official code's numerics.

* ``nll``: NLL on log-softmax with an ignore label (255), averaged over the labelled pixels only, as
  ``torch.nn.NLLLoss(ignore_index=255)``. A batch without a single labelled pixel gives 0 here, not NaN as in
  PyTorch: such a batch carries no signal, and a NaN would wrongly fail the candidate.
* ``kd_mse``: distillation on raw logits, ``MSELoss`` (mean over every element).
* ``aux_nll``: the auxiliary heads' outputs are bilinearly resized to the label size first (the official
  ``up(aux)``), then NLL; one value per head, the caller weights them.
* ``berhu``: the inverse Huber loss used for depth (c = 0.2 max|err| over the valid pixels of the batch).

Logits are NHWC; every reduction runs in at least float32 whatever the activation dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fdn.conventions import IGNORE_LABEL
from fdn.models.resize import resize_bilinear


def nll(logits, labels, ignore_label: int = IGNORE_LABEL):
    """Mean negative log-likelihood of ``labels`` (N, H, W) under ``softmax(logits)`` (N, H, W, K).

    Pixels equal to ``ignore_label`` (and any label outside ``0..K-1``) contribute nothing.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    labels = labels.astype(jnp.int32)
    valid = (labels != ignore_label) & (labels >= 0) & (labels < logits.shape[-1])
    safe = jnp.where(valid, labels, 0)
    picked = jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    total = -jnp.sum(jnp.where(valid, picked, 0.0))
    return total / jnp.maximum(jnp.sum(valid), 1)


def kd_mse(student_logits, teacher_logits):
    """Mean squared error between raw logits, over every element (``nn.MSELoss()``)."""
    dtype = jnp.promote_types(jnp.promote_types(student_logits.dtype, teacher_logits.dtype), jnp.float32)
    diff = student_logits.astype(dtype) - teacher_logits.astype(dtype)
    return jnp.mean(jnp.square(diff))


def upsample_to(x, size):
    """Bilinear resize of NHWC ``x`` to ``size`` (align_corners=False, no antialiasing)."""
    return resize_bilinear(x, tuple(size))


def aux_nll(aux_logits, labels, ignore_label: int = IGNORE_LABEL):
    """NLL of each auxiliary output after resizing it to the label size; a (num_heads,) array."""
    size = labels.shape[1:3]
    return jnp.stack([nll(upsample_to(a, size), labels, ignore_label) for a in aux_logits])


def berhu(pred, target, threshold: float = 0.2):
    """Inverse Huber loss for depth, over pixels with ``target > 0`` (0 marks missing depth).

    ``|e|`` where ``|e| <= c``, ``(e^2 + c^2) / (2c)`` above, with ``c = threshold * max|e|`` over the valid
    pixels of the batch (held constant in the gradient, as the reference implementation detaches it).
    ``pred`` (N, H, W[, 1]) is compared with ``target`` (N, H, W) at the same size.
    """
    pred = pred.astype(jnp.float32)
    if pred.ndim == target.ndim + 1:
        pred = pred[..., 0]
    target = target.astype(jnp.float32)
    valid = target > 0
    err = jnp.where(valid, jnp.abs(pred - target), 0.0)
    c = jax.lax.stop_gradient(threshold * jnp.max(err))
    c = jnp.maximum(c, 1e-12)
    quad = (jnp.square(err) + jnp.square(c)) / (2.0 * c)
    per_pixel = jnp.where(err <= c, err, quad)
    return jnp.sum(jnp.where(valid, per_pixel, 0.0)) / jnp.maximum(jnp.sum(valid), 1)

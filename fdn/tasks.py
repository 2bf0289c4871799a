"""What differs per dense-prediction task, in one registry: segmentation and depth today.

A task decides five things, and everything else in fdn (the models, the train and eval steps, evaluation,
prediction) is written once for all tasks and asks the task here:

* its name and the batch key of its labels (the same word: the datasets store ``segmentation`` / ``depth``);
* the width of the model's head (``head_size``): ``num_classes`` logits, or one raw depth channel;
* the training loss terms (``loss_terms``: ``main`` at the output's resolution, ``aux`` for the auxiliary
  heads; the distillation term is the same for every task and lives with the train step);
* the evaluation sums accumulated over a split (``eval_sums``) and the metrics they give (``summarise``,
  whose ``score`` is higher-is-better so that "best checkpoint" means the same for every task);
* the prediction map of upsampled outputs (``prediction``: class ids or depth).

Adding a task (e.g. pose) is one new ``Task`` subclass and one entry in ``REGISTRY``. Outputs are NHWC at the
decoder's resolution; labels are resized to it nearest (losses) and outputs bilinearly to the labels
(evaluation), as the search's stage 2 and Light-Weight RefineNet do.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from fdn import losses, metrics
from fdn.models.resize import resize_bilinear, resize_nearest

SEGMENTATION, DEPTH = "segmentation", "depth"


@dataclasses.dataclass(frozen=True)
class Task:
    """One task's rules. ``categorical``: outputs are class scores (argmax, confusion matrix, colour palette)
    rather than a continuous quantity; ``report_keys``: the metrics ``fdn.train`` prints at each evaluation."""

    name: str
    categorical: bool
    report_keys: tuple[str, ...]
    fixed_channels: int | None = None  # the head width when the task fixes it (depth: 1), else num_classes

    @property
    def label_key(self) -> str:
        return self.name

    def head_size(self, num_classes) -> int:
        return self.fixed_channels if self.fixed_channels is not None else int(num_classes)

    def loss_terms(self, logits, aux, batch, berhu_threshold: float) -> dict:
        raise NotImplementedError

    def eval_sums(self, logits, batch, num_classes: int) -> dict:
        raise NotImplementedError

    def summarise(self, sums, omit=()) -> dict:
        raise NotImplementedError

    def prediction(self, upsampled):
        """The task's map from outputs bilinearly upsampled to the input size (N, H, W, C) -> (N, H, W)."""
        raise NotImplementedError


class Segmentation(Task):
    """Per-pixel classes: NLL with 255 ignored, a confusion matrix, mIoU (``score``) and the search reward."""

    def loss_terms(self, logits, aux, batch, berhu_threshold: float) -> dict:
        labels = resize_nearest(batch[self.label_key], logits.shape[1:3])
        terms = {"main": losses.nll(logits, labels)}
        if aux:
            terms["aux"] = jnp.sum(losses.aux_nll(aux, labels))
        return terms

    def eval_sums(self, logits, batch, num_classes: int) -> dict:
        labels = batch[self.label_key]
        pred = jnp.argmax(resize_bilinear(logits, labels.shape[1:3]), axis=-1)
        return {"cm": metrics.confusion_matrix(pred, labels, num_classes, batch["valid"])}

    def summarise(self, sums, omit=()) -> dict:
        out = metrics.segmentation_metrics(sums["cm"], omit=tuple(omit))
        cm = np.asarray(sums["cm"], np.float64)
        out["pixel_acc"] = float(np.trace(cm) / max(cm.sum(), 1.0))
        out["score"] = out["miou"]
        return out

    def prediction(self, upsampled):
        return jnp.argmax(upsampled, -1)


class Depth(Task):
    """Metric depth from one raw channel: berHu over valid pixels (depth 0 = missing), RMSE etc.; ``score`` is
    -RMSE."""

    def loss_terms(self, logits, aux, batch, berhu_threshold: float) -> dict:
        size = logits.shape[1:3]
        target = resize_nearest(batch[self.label_key], size)
        terms = {"main": losses.berhu(logits, target, berhu_threshold)}
        if aux:
            terms["aux"] = sum(losses.berhu(losses.upsample_to(a, size), target, berhu_threshold) for a in aux)
        return terms

    def eval_sums(self, logits, batch, num_classes: int) -> dict:
        target = batch[self.label_key]
        pred = resize_bilinear(logits.astype(jnp.float32), target.shape[1:3])
        target = jnp.where(batch["valid"][:, None, None], target, 0.0)
        return metrics.depth_sums(pred, target)

    def summarise(self, sums, omit=()) -> dict:
        out = metrics.depth_metrics(sums)
        out["score"] = -out["rmse"]
        return out

    def prediction(self, upsampled):
        return upsampled[..., 0]


REGISTRY: dict[str, Task] = {
    t.name: t
    for t in (
        Segmentation(SEGMENTATION, categorical=True, report_keys=("miou", "pixel_acc")),
        Depth(DEPTH, categorical=False, report_keys=("rmse", "log_rmse", "abs_rel", "delta1"), fixed_channels=1),
    )
}
NAMES = tuple(REGISTRY)


def get(name: str) -> Task:
    """The task called ``name``; a ``ValueError`` naming the known tasks otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"task must be one of {NAMES}, got {name!r}") from None


# ``--task=auto`` on the commands that build a model from a head size alone (``fdn.convert``, ``fdn.bench
# latency``): the official release and fdn's own checkpoints before pose hold only segmentation and depth.
AUTO = "auto"


def infer_from_head(num_classes: int) -> str:
    """A guess for the two legacy tasks only: one output channel is depth, more are segmentation classes.

    Why only a guess: a head width does not decide the task once a task has a free width (pose: K heatmaps),
    so callers that can read the task (a checkpoint's ``ModelSpec``) read it, and pose must always be named."""
    return DEPTH if int(num_classes) == 1 else SEGMENTATION


def resolve(task: str, num_classes: int) -> str:
    """``task`` itself when it names a task, `infer_from_head` when it is `AUTO`; ``ValueError`` otherwise."""
    return infer_from_head(num_classes) if task == AUTO else get(task).name

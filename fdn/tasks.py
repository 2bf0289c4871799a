"""What differs per dense-prediction task, in one registry: segmentation, depth and pose.

A task decides five things, and everything else in fdn (the models, the train and eval steps, evaluation,
prediction) is written once for all tasks and asks the task here:

* its name and the batch key of its labels (the same word: the datasets store ``segmentation`` / ``depth``);
* the width of the model's head (``head_size``): ``num_classes`` logits, or one raw depth channel;
* the training loss terms (``loss_terms``: ``main`` at the output's resolution, ``aux`` for the auxiliary
  heads; the distillation term is the same for every task and lives with the train step);
* the evaluation sums accumulated over a split (``eval_sums``) and the metrics they give (``summarise``,
  whose ``score`` is higher-is-better so that "best checkpoint" means the same for every task);
* the prediction map of upsampled outputs (``prediction``: class ids or depth), or the task's own
  ``predict`` from the raw outputs (pose: joints decoded from the heatmaps);
* what the data must carry (``data_keys``) and how a picture shows labels and predictions (``picture``).

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
from fdn.pose import heatmaps

SEGMENTATION, DEPTH, POSE = "segmentation", "depth", "pose"
# How pictures show a task's labels and predictions (`fdn.serve.visualize.picture`).
CLASSES, CONTINUOUS, SKELETON = "classes", "continuous", "skeleton"
# The pose batches' fields besides ``keypoints`` (the pose label key): see ``Pose``.
KEYPOINTS, KEYPOINT_NORM, KEYPOINT_FLIP = "keypoints", "keypoint_norm", "keypoint_flip"


@dataclasses.dataclass(frozen=True)
class Task:
    """One task's rules. ``categorical``: outputs are class scores (argmax, confusion matrix, colour palette)
    rather than a continuous quantity; ``report_keys``: the metrics ``fdn.train`` prints at each evaluation."""

    name: str
    categorical: bool
    report_keys: tuple[str, ...]
    fixed_channels: int | None = None  # the head width when the task fixes it (depth: 1), else num_classes
    picture: str = CLASSES
    output_stride: int | None = None  # the model upsamples coarser outputs to this stride (pose: 4)
    flip_test: bool = False  # whether ``merge_flipped`` exists (evaluation may average with the mirror image)

    @property
    def label_key(self) -> str:
        return self.name

    @property
    def data_keys(self) -> tuple[str, ...]:
        """The record fields a batch of this task carries besides ``image`` (and ``valid``)."""
        return (self.label_key,)

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

    def predict(self, logits, input_size):
        """What ``fdn.predict`` and pictures show, from the raw outputs: by default ``prediction`` of the
        outputs bilinearly upsampled to ``input_size``."""
        return self.prediction(resize_bilinear(logits.astype(jnp.float32), tuple(input_size)))

    @property
    def json_output(self) -> bool:
        """Whether ``fdn.predict`` writes ``to_json`` of the predictions (pose joints; maps stay pictures)."""
        return type(self).to_json is not Task.to_json

    def to_json(self, prediction):
        """``predict``'s output as JSON-ready lists for ``fdn.predict``."""
        raise NotImplementedError

    def merge_flipped(self, logits, flipped_logits, batch):
        """The flip test's combined output from the outputs of the image and of its mirror image; tasks without a
        flip test (segmentation, depth: single scale, no flip, as the paper) refuse."""
        raise ValueError(f"the {self.name} task has no flip test")

    def report(self, scores, sums, names=None, omit=()) -> list[str]:
        """Lines ``fdn.evaluate`` prints below its header: a table and the headline metrics."""
        return ["  ".join(f"{k} {scores[k]:.4f}" for k in self.report_keys)]


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

    def report(self, scores, sums, names=None, omit=()) -> list[str]:
        lines = [
            metrics.class_table(sums["cm"], names, omit=omit),
            f"mIoU {scores['miou']:.4f}  pixel acc {scores['pixel_acc']:.4f}  mean acc {scores['macc']:.4f}"
            f"  fwIoU {scores['fwiou']:.4f}  search reward {scores['reward']:.4f}"
            + (f"  (classes {list(omit)} omitted)" if omit else ""),
        ]
        if not omit:
            lines.append("(the search's reward omits background: compare with --omit_classes=0)")
        return lines


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

    def report(self, scores, sums, names=None, omit=()) -> list[str]:
        return ["  ".join(f"{k} {scores[k]:.4f}" for k in metrics.DEPTH_KEYS)]


class Pose(Task):
    """Single-person keypoints as K stride-4 heatmaps (SimpleBaseline, `fdn.pose.heatmaps`).

    Batches carry ``keypoints`` (N, K, 3) = (x, y, v) in input pixels, ``keypoint_norm`` (N,) (the PCK
    normaliser: MPII's head size, fdn_shapes' object radius) and ``keypoint_flip`` (N, K) (the joint each joint
    becomes when the image is mirrored: the data knows its own joint table, so augmentation and the flip test
    need no per-dataset setting). The targets are rendered on the device at the outputs' resolution, which the
    model keeps at stride 4 (``output_stride``). ``score`` = PCK: the share of visible joints within
    0.5 x ``keypoint_norm`` (PCKh@0.5 when the norm is the head size), pooled over joints as MPII's mean."""

    @property
    def label_key(self) -> str:
        return KEYPOINTS

    @property
    def data_keys(self) -> tuple[str, ...]:
        return (KEYPOINTS, KEYPOINT_NORM, KEYPOINT_FLIP)

    def loss_terms(self, logits, aux, batch, berhu_threshold: float) -> dict:
        size = logits.shape[1:3]
        targets, weights = heatmaps.render(batch[self.label_key], size)
        terms = {"main": heatmaps.loss(logits, targets, weights)}
        if aux:
            terms["aux"] = sum(heatmaps.loss(losses.upsample_to(a, size), targets, weights) for a in aux)
        return terms

    def joints(self, logits):
        """(N, K, 3) = (x, y, peak) in input pixels, decoded from stride-4 heatmaps."""
        cells, peaks = heatmaps.decode(logits)
        return jnp.concatenate([heatmaps.to_input_pixels(cells), peaks[..., None]], axis=-1)

    def eval_sums(self, logits, batch, num_classes: int) -> dict:
        pred = self.joints(logits)[..., :2]
        hits, _ = heatmaps.pck_hits(pred, batch[self.label_key], batch[KEYPOINT_NORM])
        counted = self.counted(batch)
        return {"hits": jnp.sum(hits * counted, axis=0), "count": jnp.sum(counted, axis=0)}

    def counted(self, batch):
        """(N, K) float32: the joints PCK counts in ``batch``, the visible joints of its real (not padding) images;
        their sum is the reward's denominator (the search's start-up line names it)."""
        return heatmaps.visible(batch[self.label_key]) * jnp.asarray(batch["valid"], jnp.float32)[:, None]

    def summarise(self, sums, omit=()) -> dict:
        hits, count = np.asarray(sums["hits"], np.float64), np.asarray(sums["count"], np.float64)
        pck = float(hits.sum() / max(count.sum(), 1.0))
        per_joint = hits[count > 0] / count[count > 0]
        return {"pck": pck, "pck_joint_mean": float(per_joint.mean()) if per_joint.size else 0.0, "score": pck}

    def predict(self, logits, input_size):
        return self.joints(logits)

    def to_json(self, prediction):
        """Per image, per joint ``[x, y, peak]`` in input pixels (rounded to 1/100 pixel)."""
        return np.round(np.asarray(prediction, np.float64), 2).tolist()

    def merge_flipped(self, logits, flipped_logits, batch):
        return 0.5 * (logits + heatmaps.flip_back(flipped_logits, batch[KEYPOINT_FLIP][0]))

    def report(self, scores, sums, names=None, omit=()) -> list[str]:
        hits, count = np.asarray(sums["hits"], np.float64), np.asarray(sums["count"], np.float64)
        names = list(names) if names is not None and len(names) == len(hits) else [str(j) for j in range(len(hits))]
        width = max(5, *(len(n) for n in names))
        lines = [f"{'joint':<{width}}  {'PCK':>6}  {'visible':>8}"]
        for name, h, c in zip(names, hits, count):
            lines.append(f"{name:<{width}}  {h / c if c else float('nan'):6.3f}  {int(c):8d}")
        lines.append(
            f"PCK@0.5 {scores['pck']:.4f} (pooled over visible joints)  mean over joints {scores['pck_joint_mean']:.4f}"
        )
        return lines


REGISTRY: dict[str, Task] = {
    t.name: t
    for t in (
        Segmentation(SEGMENTATION, categorical=True, report_keys=("miou", "pixel_acc")),
        Depth(
            DEPTH,
            categorical=False,
            report_keys=("rmse", "log_rmse", "abs_rel", "delta1"),
            fixed_channels=1,
            picture=CONTINUOUS,
        ),
        Pose(
            POSE,
            categorical=False,
            report_keys=("pck",),
            picture=SKELETON,
            output_stride=heatmaps.STRIDE,
            flip_test=True,
        ),
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

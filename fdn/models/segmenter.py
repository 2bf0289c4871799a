"""Encoder + searched decoder + task head, and parameter counting.

The task decides the head width: segmentation has ``num_classes`` logits per pixel, depth one raw channel (no
activation, as the official NYUD models), pose K heatmaps. Outputs stay at the decoder's own resolution (1/4 of
the input when l1 is used, else coarser); resizing to the label size belongs to losses, metrics and prediction.
One exception, for tasks that fix an ``output_stride`` (pose: 4, as SimpleBaseline's heatmaps): a decoder whose
output is coarser (arch1/arch2 end at stride 8) is followed by a parameter-free bilinear upsample to
``ceil(H / stride) x ceil(W / stride)``, so every genotype predicts heatmaps at one resolution and the searched
decoder, its weights and the converters stay as they are.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import traverse_util

from fdn import genotype as G
from fdn import tasks
from fdn.errors import InputError
from fdn.models.decoder import Decoder, DecoderSettings
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.resize import resize_bilinear

TASKS = tasks.NAMES


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: stored beside every checkpoint."""

    genotype: G.Genotype
    decoder: DecoderSettings = DecoderSettings()
    task: str = tasks.SEGMENTATION
    expand_first_block: bool = True

    def __post_init__(self):
        channels = tasks.get(self.task).head_size(self.decoder.num_classes)
        if channels != self.decoder.num_classes:
            raise InputError(
                f"a {self.task} model has {channels} output channel{'s' if channels != 1 else ''}, "
                f"got num_classes={self.decoder.num_classes}; give num_classes={channels}, or the task the "
                f"{self.decoder.num_classes} outputs are for"
            )

    def to_dict(self) -> dict:
        return {
            "genotype": self.genotype.to_list(),
            "decoder": dataclasses.asdict(self.decoder),
            "task": self.task,
            "expand_first_block": self.expand_first_block,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(
            G.parse(d["genotype"]),
            DecoderSettings(**d["decoder"]),
            d.get("task", tasks.SEGMENTATION),
            d.get("expand_first_block", True),
        )

    def build(self) -> Segmenter:
        return Segmenter(self.genotype, self.decoder, self.expand_first_block, tasks.get(self.task).output_stride)


def upsample_to_stride(logits, input_size, stride: int | None):
    """``logits`` bilinearly upsampled to ``ceil(input / stride)`` when coarser; unchanged otherwise."""
    if stride is None:
        return logits
    size = tuple(-(-int(s) // stride) for s in input_size)
    if logits.shape[1] >= size[0] and logits.shape[2] >= size[1]:
        return logits
    return resize_bilinear(logits, size)


class Segmenter(nn.Module):
    genotype: G.Genotype
    settings: DecoderSettings = DecoderSettings()
    expand_first_block: bool = True
    output_stride: int | None = None  # the task's (`fdn.tasks`): coarser outputs are upsampled to it

    def setup(self):
        self.encoder = MobileNetV2Encoder(self.expand_first_block)
        self.decoder = Decoder(self.genotype, self.settings)

    def __call__(self, images, train: bool = False, with_aux: bool = True):
        """``images``: (N, H, W, 3) normalised. Returns ``(logits, aux_logits)`` as ``Decoder``."""
        return self.forward_with_features(images, train, with_aux)[1:]

    def forward_with_features(self, images, train: bool = False, with_aux: bool = True):
        """``(encoder_outputs, logits, aux_logits)`` from one pass (parity checks, feature caching)."""
        features = self.encoder(images, train)
        logits, aux = self.decode(features, train, with_aux, images.shape[1:3])
        return features, logits, aux

    def encode(self, images, train: bool = False):
        return self.encoder(images, train)

    def decode(self, features, train: bool = False, with_aux: bool = True, input_size=None):
        """The decoder's ``(logits, aux)``; with ``input_size`` (H, W) and an ``output_stride``, the logits at
        that stride (cached features do not know the input size: the caller passes it)."""
        logits, aux = self.decoder(features, train, with_aux)
        if input_size is not None:
            logits = upsample_to_stride(logits, input_size, self.output_stride)
        return logits, aux


def eval_forward(model: nn.Module, variables, inputs, with_aux: bool | None = False):
    """``(logits, aux_logits)`` of a ``Segmenter`` on images, or of a ``Decoder`` on encoder features, in eval
    mode: running BN statistics, nothing mutable, the auxiliary heads only when asked. ``with_aux=None`` for a
    module without auxiliary heads (a ``MobileNetV2Encoder``: returns its outputs).

    Evaluation, prediction, export, distillation teachers and candidate scoring all run this one forward, so
    that "the model's output" means the same thing to each of them.
    """
    heads = {} if with_aux is None else {"with_aux": with_aux}
    return model.apply(variables, inputs, train=False, **heads)


def init_variables(model: nn.Module, key, image_size=(64, 64), batch: int = 2):
    """Variables of ``model`` ({'params', 'batch_stats'}) for a dummy batch of the given size."""
    x = jnp.zeros((batch, *image_size, 3), jnp.float32)
    return model.init(key, x, train=False)


def count_params(params, include_aux: bool = True) -> int:
    """Number of trainable parameters; ``include_aux=False`` drops every parameter under an auxiliary head,
    as the paper's figures (the official ``compute_params`` skips every name containing 'aux')."""
    flat = traverse_util.flatten_dict(params)
    return int(sum(v.size for k, v in flat.items() if include_aux or not any("aux" in p for p in k)))


def param_counts(params) -> dict:
    return {"total": count_params(params, True), "without_aux": count_params(params, False)}


def abstract_variables(spec: ModelSpec, image_size=(64, 64)):
    """Shapes and dtypes of a model's variables without allocating them."""
    model = spec.build()
    return jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), image_size))

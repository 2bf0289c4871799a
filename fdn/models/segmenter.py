"""Encoder + searched decoder + task head, and parameter counting.

The task decides the head width: segmentation has ``num_classes`` logits per pixel, depth one raw channel (no
activation, as the official NYUD models). Outputs stay at the decoder's own resolution (1/4 of the input when
l1 is used, else coarser); resizing to the label size belongs to losses, metrics and prediction.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import traverse_util

from fdn import genotype as G
from fdn import tasks
from fdn.models.decoder import Decoder, DecoderSettings
from fdn.models.encoder import MobileNetV2Encoder

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
            raise ValueError(
                f"a {self.task} model has {channels} output channel{'s' if channels != 1 else ''}, "
                f"got num_classes={self.decoder.num_classes}"
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
        return Segmenter(self.genotype, self.decoder, self.expand_first_block)


class Segmenter(nn.Module):
    genotype: G.Genotype
    settings: DecoderSettings = DecoderSettings()
    expand_first_block: bool = True

    def setup(self):
        self.encoder = MobileNetV2Encoder(self.expand_first_block)
        self.decoder = Decoder(self.genotype, self.settings)

    def __call__(self, images, train: bool = False, with_aux: bool = True):
        """``images``: (N, H, W, 3) normalised. Returns ``(logits, aux_logits)`` as ``Decoder``."""
        return self.decoder(self.encoder(images, train), train, with_aux)

    def forward_with_features(self, images, train: bool = False, with_aux: bool = True):
        """``(encoder_outputs, logits, aux_logits)`` from one pass (parity checks, feature caching)."""
        features = self.encoder(images, train)
        logits, aux = self.decoder(features, train, with_aux)
        return features, logits, aux

    def encode(self, images, train: bool = False):
        return self.encoder(images, train)

    def decode(self, features, train: bool = False, with_aux: bool = True):
        return self.decoder(features, train, with_aux)


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

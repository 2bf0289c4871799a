"""The pixel conventions every part of fdn shares: ImageNet normalisation and the ignore label.

They live at the top of the package, beside ``genotype`` and ``losses``, and import only NumPy, because the
data pipeline (and its grain worker processes), the losses, the candidate programs and serving all need them:
under ``fdn.data`` they would drag in the tfds builders that ``fdn/data/__init__.py`` registers, and under
``fdn.serve`` the data pipeline would depend on serving.

* ``normalise``: uint8 RGB -> float32 ``(x / 255 - mean) / std``, the ImageNet statistics the encoder was
  pretrained with (the official code and torchvision use the same numbers). It is the one definition used for
  training crops, evaluation crops and the images ``fdn.predict`` reads, so a picture is normalised the same
  way whichever command sees it.
* ``IGNORE_LABEL``: segmentation pixels labelled 255 carry no supervision (VOC's object borders, padding
  added by crops); losses skip them and metrics leave them out of the confusion matrix.
"""

from __future__ import annotations

import numpy as np

MEAN_RGB = (0.485, 0.456, 0.406)  # as published (recorded beside exported artifacts)
STD_RGB = (0.229, 0.224, 0.225)
IMAGENET_MEAN = np.array(MEAN_RGB, np.float32)
IMAGENET_STD = np.array(STD_RGB, np.float32)
IGNORE_LABEL = 255


def normalise(image) -> np.ndarray:
    """(..., 3) uint8 RGB -> float32, /255 then ImageNet mean/std (what the encoder was trained with).

    The /255 is a multiplication by the float32 reciprocal: that is what the training data of every search and
    training run so far saw, and it must stay bit-identical for a seed to keep reproducing its results."""
    return (np.asarray(image).astype(np.float32) * np.float32(1 / 255) - IMAGENET_MEAN) / IMAGENET_STD


def denormalise(image) -> np.ndarray:
    """Inverse of ``normalise`` back to uint8 (for pictures and tests)."""
    return np.clip(np.round((image * IMAGENET_STD + IMAGENET_MEAN) * 255), 0, 255).astype(np.uint8)

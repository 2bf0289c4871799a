"""TF-free tfds feature connectors shared by the fdn builders.

Every builder writes ArrayRecord files that ``tfds.data_source`` decodes with NumPy and PIL only:
images are stored as the original (or a lossless PNG) encoded file and decoded by PIL, label maps and
depth maps as raw zlib-compressed arrays. Nothing here needs TensorFlow, at build time or at read time.
"""

import numpy as np
import tensorflow_datasets as tfds


class StrText(tfds.features.Text):
    """``tfds.features.Text`` that decodes to ``str`` instead of ``bytes`` on the NumPy path.

    Record ids are file stems (ASCII); returning ``str`` saves every caller a ``.decode()``. The class is
    registered with tfds under ``fdn.data.features.StrText`` so a prepared dataset's ``features.json``
    reloads it wherever ``fdn`` is importable.
    """

    def decode_example_np(self, example_data):
        value = super().decode_example_np(example_data)
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray) and value.dtype == object:
            return np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v, otypes=[object])(value)
        return value


def image(encoding_format="png"):
    """An RGB uint8 image of any size, kept as encoded bytes (original JPEG/PNG or lossless PNG)."""
    return tfds.features.Image(shape=(None, None, 3), encoding_format=encoding_format)


def label_map():
    """An (H, W) uint8 class map (255 = ignore), zlib-compressed raw bytes: exact and TF-free."""
    return tfds.features.Tensor(shape=(None, None), dtype=np.uint8, encoding="zlib")


def depth_map():
    """An (H, W) float32 depth map in metres (0 = invalid), zlib-compressed raw bytes."""
    return tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="zlib")


def image_id():
    """The record's file stem as ``str``."""
    return StrText()

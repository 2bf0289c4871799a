"""``nyu_depth_v2_labeled``: the 1,449 densely labelled NYU-Depth v2 frames (640x480), official split.

Splits ``train`` (795) and ``test`` (654) from the official ``splits.mat`` (``trainNdxs`` / ``testNdxs``,
1-based). Features: ``image`` (480, 640, 3) uint8 (stored as lossless PNG), ``image_id`` (the 1-based
index into the labelled set, e.g. ``'231'``), ``depth`` (480, 640) float32 metres from ``depths`` (the
in-painted maps: every pixel is valid there; 0 would mean invalid), ``labels_894`` (480, 640) uint16, the
raw 894-class labels (0 = unlabelled).

Config ``nyu_depth_v2_labeled/seg40`` also has ``segmentation`` (480, 640) uint8: the 40-class labels of
Gupta et al. (CVPR 2013), 0..39, 255 = unlabelled, mapped with ``mapClass`` (894 -> 1..40) of
``classMapping40.mat`` from https://github.com/ankurhanda/nyuv2-meta-data (put it in the manual dir).

Manual directory::

    MANUAL/nyu_depth_v2_labeled.mat   http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat
    MANUAL/splits.mat                 http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat
    MANUAL/classMapping40.mat         (seg40 only) https://github.com/ankurhanda/nyuv2-meta-data

``nyu_depth_v2_labeled.mat`` is MATLAB v7.3, i.e. HDF5, read with h5py; MATLAB's column-major arrays
appear transposed there (``images`` as (N, 3, W, H), ``depths``/``labels`` as (N, W, H)). ``splits.mat``
is MATLAB v5, read with scipy.
"""

import io

import h5py
import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, features

LABELED_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
SPLITS_URL = "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
MAPPING_URL = "https://github.com/ankurhanda/nyuv2-meta-data (classMapping40.mat)"
HOW = f"nyu_depth_v2_labeled.mat ({LABELED_URL}) and splits.mat ({SPLITS_URL})"


def read_splits(path):
    """``{'train': 0-based indices, 'test': ...}`` from the official 1-based ``splits.mat``."""
    mat = scipy.io.loadmat(path)
    return {
        "train": np.asarray(mat["trainNdxs"]).ravel().astype(np.int64) - 1,
        "test": np.asarray(mat["testNdxs"]).ravel().astype(np.int64) - 1,
    }


def read_mapping40(path):
    """Lookup table raw label (0..894) -> 40-class label (0..39, 255 = unlabelled) from ``mapClass``."""
    map_class = np.asarray(scipy.io.loadmat(path)["mapClass"]).ravel().astype(np.int64)
    table = np.full(max(len(map_class) + 1, 65536), 255, np.uint8)
    table[1 : len(map_class) + 1] = np.where(map_class > 0, map_class - 1, 255)
    return table


def read_frame(mat, index):
    """Image (H, W, 3) uint8, depth (H, W) float32 and raw labels (H, W) uint16 of frame ``index`` (0-based)."""
    image = np.ascontiguousarray(np.asarray(mat["images"][index]).transpose(2, 1, 0), dtype=np.uint8)
    depth = np.ascontiguousarray(np.asarray(mat["depths"][index]).T, dtype=np.float32)
    labels = np.ascontiguousarray(np.asarray(mat["labels"][index]).T, dtype=np.uint16)
    return image, depth, labels


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class NyuDepthV2Labeled(base.ArrayRecordBuilder):
    """Builder of ``nyu_depth_v2_labeled`` (configs ``depth``, the default, and ``seg40``)."""

    name = "nyu_depth_v2_labeled"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Labelled NYU-Depth v2, official 795/654 split."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="depth", description="image, depth, raw 894-class labels"),
        tfds.core.BuilderConfig(name="seg40", description="also 40-class segmentation (classMapping40.mat)"),
    ]
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW
    HOMEPAGE = "https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html"

    def _features(self):
        spec = {
            "image": features.image("png"),
            "image_id": features.image_id(),
            "depth": features.depth_map(),
            "labels_894": tfds.features.Tensor(shape=(None, None), dtype=np.uint16, encoding="zlib"),
        }
        if self.builder_config.name == "seg40":
            spec["segmentation"] = features.label_map()
        return tfds.features.FeaturesDict(spec)

    def _split_generators(self, dl_manager):
        root = self._manual_root(dl_manager, HOW)
        labeled = base.require(
            root / "nyu_depth_v2_labeled.mat", "the labelled NYU-Depth v2 set", f"download {LABELED_URL}"
        )
        splits = read_splits(base.require(root / "splits.mat", "the official split", f"download {SPLITS_URL}"))
        mapping = None
        if self.builder_config.name == "seg40":
            mapping = read_mapping40(
                base.require(root / "classMapping40.mat", "the 894->40 class mapping", f"download {MAPPING_URL}")
            )
        try:
            with h5py.File(labeled, "r") as mat:
                missing = [k for k in ("images", "depths", "labels") if k not in mat]
                count = mat["images"].shape[0] if "images" in mat else 0
        except OSError as e:
            raise base.ManualDataError(
                f"{labeled} is not a readable MATLAB v7.3 (HDF5) file ({e}); download it again from {LABELED_URL}"
            ) from None
        if missing:
            raise base.ManualDataError(f"{labeled} lacks {missing}; download it again from {LABELED_URL}")
        for split, indices in splits.items():
            if indices.size and (indices.min() < 0 or indices.max() >= count):
                raise base.ManualDataError(f"splits.mat {split} indices exceed the {count} frames of {labeled}")
        return {split: self._generate_examples(labeled, indices, mapping) for split, indices in splits.items()}

    def _generate_examples(self, labeled, indices, mapping):
        with h5py.File(labeled, "r") as mat:
            for index in indices:
                image, depth, labels = read_frame(mat, int(index))
                image_id = str(int(index) + 1)
                example = {"image": _png(image), "image_id": image_id, "depth": depth, "labels_894": labels}
                if mapping is not None:
                    example["segmentation"] = mapping[labels]
                yield image_id, example

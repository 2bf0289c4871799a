"""``image_folder/NAME``: your own labelled images, one prepared dataset per NAME (splits ``train`` and ``val``).

Folder (``--manual_dir``)::

    DIR/images/STEM.jpg|.jpeg|.png    RGB photos (grey, RGBA or palette files are converted to RGB)
    DIR/masks/STEM.png                segmentation: class indices as a grey (L) or palette (P) PNG; 255 = ignore
    DIR/depth/STEM.png                depth (--task=depth): 16-bit grey PNG, metres = value * --depth_scale; 0 = invalid
    DIR/classes.txt                   optional: one class name a line (K lines -> labels 0..K-1)
    DIR/train.txt, DIR/val.txt        optional: stems of each split (one given: the other split is the rest);
                                      without them a seeded split puts --val_fraction of the images in val

Palette masks are read as VOC's ``SegmentationClass``: the palette index is the class, never the colour.
Without ``classes.txt`` the class count is the largest label + 1. Every file is checked before anything is
written, and the first bad one is named: an image without a mask, a mask of another size than its image, an
RGB mask, a label outside 0..K-1 and 255, an empty split.

Why tfds builder configs made on demand: tfds (TF-free) supports one builder class with many configs, each
prepared into its own ``DATA_DIR/image_folder/NAME/VERSION`` directory, and ``tfds.builder('image_folder/NAME')``
of a prepared config reads it back from its own files (features, splits and ``metadata.json``, which holds the
class count and names), since NAME is in no list in the code. So any NAME works without registering a class
per folder, and ``pipeline.data_source``, the search and ``fdn.train`` need nothing special. The features are
those of ``voc_sbd`` (segmentation) and ``nyu_depth_v2_labeled`` (depth), so the pipelines run unchanged.
"""

import dataclasses
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, features
from fdn.errors import UserError

TASKS = ("segmentation", "depth")
LABEL_DIRS = {"segmentation": "masks", "depth": "depth"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IGNORE = 255
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I")
HOW = (
    "DIR/images/*.jpg|png and DIR/masks/*.png (same stems; DIR/depth/*.png for --task=depth), "
    "optional DIR/classes.txt, DIR/train.txt, DIR/val.txt"
)


class ImageFolderError(UserError, ValueError):
    """A file of the image folder cannot be used; the message names the first bad file and what to do."""


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
    """One image folder: its NAME and how ``prepare`` reads it (kept in the prepared dataset's metadata)."""

    task: str = "segmentation"
    depth_scale: float = 0.001  # metres per unit of the 16-bit depth PNGs (millimetres, as Kinect/NYU)
    val_fraction: float = 0.1  # share of val in the seeded split (without train.txt / val.txt)
    split_seed: int = 0


def check_name(name):
    """``name`` if it can name a prepared folder (a directory name tfds accepts), else an ``ImageFolderError``."""
    if not NAME_PATTERN.match(name or ""):
        raise ImageFolderError(
            f'image_folder: bad NAME {name!r}: use letters, digits, "_", "-" and "." (e.g. --name=roads)'
        )
    return name


def default_name(manual_dir):
    """The folder's own name, made safe (``--name`` defaults to it)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(manual_dir).expanduser().resolve().name).lstrip("_.-")
    return name or "images"


def read_classes(root):
    """Class names from ``classes.txt`` (blank lines skipped), or None when there is none."""
    path = root / "classes.txt"
    if not path.exists():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not 1 <= len(names) <= IGNORE:
        raise ImageFolderError(f"{path}: {len(names)} class names; give 1 to {IGNORE} (one a line)")
    return names


def find_pairs(root, task):
    """``{stem: (image_path, label_path)}`` of every image, sorted; an image without its label file is an error."""
    image_dir = base.require(root / "images", "the images folder", HOW)
    label_dir = base.require(root / LABEL_DIRS[task], f"the {LABEL_DIRS[task]} folder", HOW)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ImageFolderError(f"{image_dir}: no images (.jpg, .jpeg or .png)")
    pairs, seen = {}, {}
    for image in images:
        if image.stem in seen:
            raise ImageFolderError(f"{image}: two images with stem {image.stem!r} ({seen[image.stem].name}); keep one")
        seen[image.stem] = image
        label = label_dir / f"{image.stem}.png"
        if not label.exists():
            raise ImageFolderError(f"{image}: no {LABEL_DIRS[task]} file for this image: expected {label}")
        pairs[image.stem] = (image, label)
    return pairs


def read_mask(path):
    """Class indices of a grey or palette PNG as uint8 (H, W); an RGB mask is an error with a hint."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ImageFolderError(
                f"{path}: a mask must be a grey (L) or palette (P) PNG of class indices, got mode {image.mode}; "
                "colours are not class ids: map each colour to its index and save with Image.fromarray(uint8)"
            )
        return np.array(image, dtype=np.uint8)


def read_depth(path, scale):
    """Depth in metres (float32 (H, W), 0 = invalid) from a 16-bit grey PNG."""
    with Image.open(path) as image:
        if image.mode not in DEPTH_MODES:
            raise ImageFolderError(
                f"{path}: depth must be a 16-bit grey PNG (value * --depth_scale = metres, "
                f"0 = invalid), got mode {image.mode}"
            )
        values = np.array(image).astype(np.float32)
    if (values < 0).any():
        raise ImageFolderError(f"{path}: negative depth values; 0 marks invalid pixels")
    return values * np.float32(scale)


def image_size(path):
    """(H, W) of an image file, from its header."""
    with Image.open(path) as image:
        return image.size[::-1]


def check_labels(pairs, task, num_classes, depth_scale):
    """Reads every label file once: sizes match the images, segmentation labels lie in 0..K-1 or 255.

    Returns the class count (``num_classes`` from classes.txt, else the largest label + 1; None for depth).
    """
    largest = -1
    for image, label in pairs.values():
        values = read_mask(label) if task == "segmentation" else read_depth(label, depth_scale)
        if values.shape != image_size(image):
            raise ImageFolderError(
                f"{label}: size {values.shape[1]}x{values.shape[0]} (WxH) differs from its image "
                f"{image.name}, {image_size(image)[1]}x{image_size(image)[0]}; save them alike"
            )
        if task != "segmentation":
            continue
        labels = np.unique(values)
        labels = labels[labels != IGNORE]
        if num_classes is not None and labels.size and labels.max() >= num_classes:
            bad = [int(v) for v in labels if v >= num_classes]
            raise ImageFolderError(
                f"{label}: labels {bad[:8]} are outside 0..{num_classes - 1} and {IGNORE} "
                f"(classes.txt names {num_classes} classes)"
            )
        largest = max(largest, int(labels.max()) if labels.size else -1)
    if task != "segmentation" or num_classes is not None:
        return num_classes
    if largest < 1:
        raise ImageFolderError(
            f"every mask holds only class {max(largest, 0)} (or {IGNORE}): a segmentation needs two classes or more"
        )
    return largest + 1


def split_stems(root, stems, val_fraction, seed):
    """``{'train': [...], 'val': [...]}`` from train.txt / val.txt, else a seeded split; an empty split is an error."""
    lists = {s: base.read_list(root / f"{s}.txt") for s in ("train", "val") if (root / f"{s}.txt").exists()}
    for split, listed in lists.items():
        unknown = [s for s in listed if s not in stems]
        if unknown:
            raise ImageFolderError(f"{root / (split + '.txt')}: {unknown[0]!r} is not an image in {root / 'images'}")
    if lists:
        for split, other in (("train", "val"), ("val", "train")):
            if split not in lists:
                taken = set(lists[other])
                lists[split] = [s for s in stems if s not in taken]
    else:
        if not 0 < val_fraction < 1:
            raise ImageFolderError(f"--val_fraction must be in (0, 1), got {val_fraction}")
        order = np.random.default_rng(seed).permutation(len(stems))
        num_val = max(1, round(len(stems) * val_fraction))
        val = set(order[:num_val].tolist())
        lists = {
            "train": [s for i, s in enumerate(stems) if i not in val],
            "val": [s for i, s in enumerate(stems) if i in val],
        }
    for split in ("train", "val"):
        if not lists[split]:
            raise ImageFolderError(
                f"image_folder: split {split} of {root} is empty: give it images in "
                f"{split}.txt, or add images (the seeded split needs two or more)"
            )
    return lists


def rgb_image(path):
    """The file's bytes when it is already an RGB JPEG/PNG (stored as is), else its RGB array (stored as PNG)."""
    with Image.open(path) as image:
        if image.mode == "RGB":
            return Path(path).read_bytes()
        return np.array(image.convert("RGB"))


class ImageFolder(base.ArrayRecordBuilder):
    """Builder of ``image_folder/NAME``: NAME is any config name, made on first use (see the module docstring)."""

    name = "image_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images with masks (or depth) from a folder; splits train/val."}
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW
    _configs: ClassVar[dict] = {}  # NAME -> ImageFolderConfig: the one tfds finds for that name (see ``use``)

    @classmethod
    def use(cls, config):
        """Makes ``config`` the one ``image_folder/{config.name}`` builds with (``prepare`` sets the flags' values)."""
        cls._configs[check_name(config.name)] = config
        return config

    @classmethod
    def get_builder_config(cls, name, version=None):
        # tfds looks configs up by name here; any valid NAME gets one (default settings until ``use`` sets them).
        del version
        if not NAME_PATTERN.match(name or ""):
            return None
        return cls._configs.setdefault(name, ImageFolderConfig(name=name))

    def _features(self):
        if self.builder_config is None:
            raise ImageFolderError(
                "image_folder needs a NAME: image_folder/NAME (python -m fdn.data.prepare "
                "image_folder --name=NAME --manual_dir=DIR)"
            )
        label = features.label_map() if self.builder_config.task == "segmentation" else features.depth_map()
        return tfds.features.FeaturesDict(
            {"image": features.image("png"), "image_id": features.image_id(), self.builder_config.task: label}
        )

    def _metadata(self):
        return tfds.core.MetadataDict()

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if config.task not in TASKS:
            raise ImageFolderError(f"--task must be {' or '.join(TASKS)}, got {config.task!r}")
        root = self._manual_root(dl_manager, HOW)
        names = read_classes(root) if config.task == "segmentation" else None
        pairs = find_pairs(root, config.task)
        num_classes = check_labels(pairs, config.task, len(names) if names else None, config.depth_scale)
        splits = split_stems(root, list(pairs), config.val_fraction, config.split_seed)
        self.info.metadata.update(
            {
                "task": config.task,
                "num_classes": num_classes,
                "class_names": names or ([str(i) for i in range(num_classes)] if num_classes else None),
                "depth_scale": config.depth_scale if config.task == "depth" else None,
                "manual_dir": str(root),
            }
        )
        return {split: self._generate_examples([(s, *pairs[s]) for s in stems]) for split, stems in splits.items()}

    def _generate_examples(self, items):
        task, scale = self.builder_config.task, self.builder_config.depth_scale
        for stem, image, label in items:
            values = read_mask(label) if task == "segmentation" else read_depth(label, scale)
            yield stem, {"image": rgb_image(image), "image_id": stem, task: values}


def configure(
    name, manual_dir, *, folder_name=None, task="segmentation", depth_scale=0.001, val_fraction=0.1, split_seed=0
):
    """Sets up ``image_folder/NAME`` for preparing from ``manual_dir`` and returns that full name.

    NAME comes from ``name`` (``image_folder/NAME``) or ``folder_name`` (``--name``), else the folder's own name.
    """
    given = name.partition("/")[2]
    if given and folder_name and given != folder_name:
        raise ImageFolderError(f"two names: {name} and --name={folder_name}; give one")
    if not manual_dir:
        raise base.ManualDataError(f"image_folder: pass --manual_dir=DIR holding {HOW}")
    folder_name = check_name(given or folder_name or default_name(manual_dir))
    if task not in TASKS:
        raise ImageFolderError(f"--task must be {' or '.join(TASKS)}, got {task!r}")
    if task == "depth" and not depth_scale > 0:
        raise ImageFolderError(f"--depth_scale must be > 0 (metres per unit), got {depth_scale}")
    ImageFolder.use(
        ImageFolderConfig(
            name=folder_name,
            task=task,
            depth_scale=float(depth_scale),
            val_fraction=float(val_fraction),
            split_seed=int(split_seed),
        )
    )
    return f"image_folder/{folder_name}"

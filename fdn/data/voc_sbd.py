"""``voc_sbd``: PASCAL VOC 2012 segmentation with the SBD extra annotations (21 classes, 255 = ignore).

Splits: ``train_aug`` = VOC train + SBD train + SBD val - VOC val (10,582 images on the real data),
``val`` = VOC val (1,449), ``train`` = VOC train (1,464).

Manual directory (``--manual_dir``), either of these layouts::

    MANUAL/VOCdevkit/VOC2012/JPEGImages/*.jpg                       (VOCtrainval_11-May-2012.tar)
    MANUAL/VOCdevkit/VOC2012/SegmentationClass/*.png                 palette PNGs
    MANUAL/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    MANUAL/benchmark_RELEASE/dataset/cls/*.mat                       (SBD benchmark.tgz)
    MANUAL/benchmark_RELEASE/dataset/{train,val}.txt
  or, instead of SBD, the pre-merged masks
    MANUAL/VOCdevkit/VOC2012/SegmentationClassAug/*.png              (+ optional ImageSets/Segmentation/train_aug.txt)

``MANUAL`` may also point at ``VOCdevkit`` or ``VOC2012`` itself (then SBD is looked for next to it).

Masks: VOC PNGs are palette images whose pixel values are the class indices, read with
``np.array(Image.open(png))`` (never converted to RGB), 255 on the border band. An image in VOC's
SegmentationClass uses that mask (it has the 255 band); an SBD-only image uses ``GTcls.Segmentation`` of
its ``cls/*.mat`` (0..20, no band). Images come from VOC's ``JPEGImages`` (which holds every SBD image),
else SBD's ``dataset/img``. The original JPEG bytes are stored, so ``image`` decodes to exactly what PIL
reads from the file.
"""

from pathlib import Path

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, features

CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
SBD_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
HOW = (
    f"VOCdevkit/VOC2012 from {VOC_URL} (extract it) and benchmark_RELEASE/ from {SBD_URL}, "
    "or VOCdevkit/VOC2012/SegmentationClassAug/ with the pre-merged augmented masks"
)


def find_voc(root):
    """The ``VOC2012`` folder under ``root`` (several accepted layouts), else a clear error."""
    root = Path(root)
    found = base.first_existing([root / "VOCdevkit" / "VOC2012", root / "VOC2012", root])
    if found is None or not (found / "JPEGImages").is_dir():
        raise base.ManualDataError(
            f"missing VOC 2012: expected {root / 'VOCdevkit' / 'VOC2012' / 'JPEGImages'}"
            f"\n  download and extract {VOC_URL}"
        )
    return found


def find_sbd(root, voc):
    """SBD's ``dataset`` folder next to the VOC tree, or ``None`` if it is not there."""
    root = Path(root)
    candidates = [root / "benchmark_RELEASE" / "dataset", root / "benchmark_RELEASE", root / "dataset"]
    candidates += [voc.parent / "benchmark_RELEASE" / "dataset", voc.parent.parent / "benchmark_RELEASE" / "dataset"]
    for candidate in candidates:
        if (candidate / "cls").is_dir():
            return candidate
    return None


def read_sbd_mat(path):
    """Class indices of an SBD ``cls/*.mat`` (``GTcls.Segmentation``) as uint8."""
    mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    return np.asarray(mat["GTcls"].Segmentation, dtype=np.uint8)


def read_png_indices(path):
    """The palette indices of a VOC mask (``np.array(Image.open(png))``), uint8 (H, W)."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette (P) or grey (L) PNG of class indices, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def plan(root):
    """``{split: [(image_id, jpeg_path, mask_path), ...]}`` from the manual tree, all files checked.

    Checking every file before writing anything turns a half-extracted archive into an error naming the
    first missing file, instead of a dataset that fails (or silently shrinks) halfway.
    """
    voc = find_voc(root)
    lists = voc / "ImageSets" / "Segmentation"
    voc_train = base.read_list(base.require(lists / "train.txt", "VOC train list", f"download {VOC_URL}"))
    voc_val = base.read_list(base.require(lists / "val.txt", "VOC val list", f"download {VOC_URL}"))
    aug_dir = voc / "SegmentationClassAug"
    sbd = find_sbd(root, voc)

    def voc_mask(i):
        return voc / "SegmentationClass" / f"{i}.png"

    def image_path(i):
        path = voc / "JPEGImages" / f"{i}.jpg"
        if not path.exists() and sbd is not None and (sbd / "img" / f"{i}.jpg").exists():
            return sbd / "img" / f"{i}.jpg"
        return path

    val_set = set(voc_val)
    if sbd is not None:
        sbd_ids = base.read_list(base.require(sbd / "train.txt", "SBD train list", f"download {SBD_URL}"))
        sbd_ids += base.read_list(base.require(sbd / "val.txt", "SBD val list", f"download {SBD_URL}"))
        aug_ids = list(dict.fromkeys(voc_train + sbd_ids))  # union, keeping a stable order
        aug_ids = [i for i in aug_ids if i not in val_set]
        train_aug = [
            (i, image_path(i), voc_mask(i) if voc_mask(i).exists() else sbd / "cls" / f"{i}.mat") for i in aug_ids
        ]
    elif aug_dir.is_dir():
        aug_list = lists / "train_aug.txt"
        if aug_list.exists():
            aug_ids = base.read_list(aug_list)
        else:
            aug_ids = sorted(p.stem for p in aug_dir.glob("*.png") if p.stem not in val_set)
        train_aug = [(i, image_path(i), aug_dir / f"{i}.png") for i in aug_ids]
    else:
        raise base.ManualDataError(
            f"missing SBD: expected {Path(root) / 'benchmark_RELEASE' / 'dataset' / 'cls'} (or {aug_dir})\n"
            f"  download and extract {SBD_URL}"
        )
    splits = {
        "train_aug": train_aug,
        "val": [(i, image_path(i), voc_mask(i)) for i in voc_val],
        "train": [(i, image_path(i), voc_mask(i)) for i in voc_train],
    }
    for split, items in splits.items():
        for image_id, jpg, mask in items:
            base.require(jpg, f"image {image_id} of split {split}", HOW)
            base.require(mask, f"mask {image_id} of split {split}", HOW)
    return splits


def load_mask(path):
    """A mask from a VOC/Aug PNG or an SBD .mat."""
    path = Path(path)
    return read_sbd_mat(path) if path.suffix == ".mat" else read_png_indices(path)


class VocSbd(base.ArrayRecordBuilder):
    """Builder of ``voc_sbd`` (see the module docstring for the manual directory)."""

    name = "voc_sbd"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "VOC 2012 + SBD, splits train_aug/val/train."}
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = HOW
    HOMEPAGE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"

    def _features(self):
        return tfds.features.FeaturesDict(
            {
                "image": features.image("jpeg"),
                "image_id": features.image_id(),
                "segmentation": features.label_map(),
            }
        )

    def _split_generators(self, dl_manager):
        splits = plan(self._manual_root(dl_manager, HOW))
        return {split: self._generate_examples(items) for split, items in splits.items()}

    def _generate_examples(self, items):
        for image_id, jpg, mask_path in items:
            jpeg = Path(jpg).read_bytes()
            mask = load_mask(mask_path)
            with Image.open(jpg) as image:
                size = image.size[::-1]
                if image.mode != "RGB":  # a grey JPEG would decode to (H, W): store it as RGB PNG instead
                    jpeg = image.convert("RGB")
            if mask.shape != size:
                raise ValueError(f"{mask_path}: mask shape {mask.shape} != image shape {size} of {jpg}")
            yield image_id, {"image": jpeg, "image_id": image_id, "segmentation": mask}

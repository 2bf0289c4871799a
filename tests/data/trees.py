"""Writers of miniature dataset trees in the real on-disk formats (for the builder tests)."""

from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SAMPLES = SHARED / "data" / "samples"


def voc_palette():
    """The standard VOC colour map (index i -> bit-interleaved RGB)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_palette_png(path, mask):
    """A mode-P PNG whose pixel values are ``mask`` (as VOC's SegmentationClass)."""
    image = Image.frombytes("P", mask.shape[::-1], np.ascontiguousarray(mask, np.uint8).tobytes())
    image.putpalette(voc_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_jpeg(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def random_mask(rng, h, w, num_classes=21, border=True):
    """Blocky class map with a 255 band on the block borders (like VOC's void band)."""
    mask = np.kron(rng.integers(0, num_classes, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4), np.int64))[:h, :w]
    mask = mask.astype(np.uint8)
    if border:
        edge = np.zeros_like(mask, bool)
        edge[1:] |= mask[1:] != mask[:-1]
        edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
        mask[edge] = 255
    return mask


def write_sbd_mat(path, mask):
    """An SBD ``cls/*.mat`` with ``GTcls.Segmentation`` (and the other fields of the release)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    present = np.unique(mask[(mask > 0) & (mask < 255)]).astype(np.uint8)
    scipy.io.savemat(
        path, {"GTcls": {"Segmentation": mask, "CategoriesPresent": present, "Boundaries": np.zeros((20, 1), object)}}
    )


def write_voc_sbd(root, rng, size=(20, 28), with_sbd=True):
    """VOCdevkit/VOC2012 + benchmark_RELEASE/dataset; returns the expected arrays per split.

    VOC train {a, b}, val {c}; SBD train {b, d, c}, SBD val {e}: train_aug = {a, b (VOC mask), d, e (SBD)}.
    """
    h, w = size
    voc = root / "VOCdevkit" / "VOC2012"
    ids = {"a": "2007_000032", "b": "2007_000039", "c": "2007_000033", "d": "2008_000002", "e": "2008_000003"}
    images, voc_masks, sbd_masks = {}, {}, {}
    for key, image_id in ids.items():
        shape = (h + 2 * ord(key) % 5, w)  # different sizes
        images[image_id] = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
        write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", images[image_id])
        if key in "abc":
            voc_masks[image_id] = random_mask(rng, *shape)
            write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", voc_masks[image_id])
        if key in "bdce" and with_sbd:
            sbd_masks[image_id] = random_mask(rng, *shape, border=False)
            write_sbd_mat(root / "benchmark_RELEASE" / "dataset" / "cls" / f"{image_id}.mat", sbd_masks[image_id])
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text(f"{ids['a']}\n{ids['b']}\n")
    (lists / "val.txt").write_text(f"{ids['c']}\n")
    if with_sbd:
        sbd = root / "benchmark_RELEASE" / "dataset"
        (sbd / "train.txt").write_text(f"{ids['b']}\n{ids['d']}\n{ids['c']}\n")
        (sbd / "val.txt").write_text(f"{ids['e']}\n")
    # Decoded JPEGs are what the dataset must return (the original bytes are stored).
    decoded = {i: np.array(Image.open(voc / "JPEGImages" / f"{i}.jpg")) for i in ids.values()}
    masks = {**sbd_masks, **voc_masks}  # a VOC mask wins over the SBD one
    expected = {
        "train": {i: masks[i] for i in (ids["a"], ids["b"])},
        "val": {ids["c"]: masks[ids["c"]]},
        "train_aug": {i: masks[i] for i in (ids["a"], ids["b"], ids["d"], ids["e"]) if i in masks},
    }
    return decoded, expected


def prepared_voc_sbd(root) -> Path:
    """A prepared miniature voc_sbd under ``root`` (train_aug: 4 images of 40x56, so meta-train 3 / meta-val 1);
    its tfds data dir."""
    from fdn.data import prepare

    root = Path(root)
    write_voc_sbd(root / "manual", np.random.default_rng(0), size=(40, 56))
    prepare.prepare("voc_sbd", data_dir=root / "tfds", manual_dir=root / "manual")
    return root / "tfds"


def write_nyu(root, rng, frames, labels_max=894):
    """``nyu_depth_v2_labeled.mat`` (HDF5 with MATLAB's 512-byte header, transposed axes) + ``splits.mat``.

    ``frames`` is a list of (H, W, 3) uint8 images; returns (depths, labels) as (H, W) arrays.
    """
    root.mkdir(parents=True, exist_ok=True)
    n = len(frames)
    h, w = frames[0].shape[:2]
    depths = rng.uniform(0.5, 10.0, (n, h, w)).astype(np.float32)
    labels = rng.integers(0, labels_max + 1, (n, h, w)).astype(np.uint16)
    labels[:, 0, :2] = (0, labels_max)  # unlabelled and the largest id always appear
    path = root / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = np.stack(frames).transpose(0, 3, 2, 1)  # (N, 3, W, H) as MATLAB writes (H, W, 3, N)
        f["depths"] = depths.transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    train = np.arange(1, n + 1, 2)[:, None].astype(np.float64)  # 1-based column vectors, as the release
    test = np.arange(2, n + 1, 2)[:, None].astype(np.float64)
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": train, "testNdxs": test})
    return depths, labels


def write_cityscapes(root, rng, splits=("train", "val"), size=(8, 16)):
    """leftImg8bit/ and gtFine/ trees with 2 cities; returns {split: {stem: (image, label_ids)}}."""
    out = {}
    for split in splits:
        out[split] = {}
        for city in ("aachen", "bonn"):
            for k in range(2):
                stem = f"{city}_{k:06d}_{19 + k:06d}"
                image = rng.integers(0, 256, size + (3,)).astype(np.uint8)
                label_ids = rng.integers(0, 34, size).astype(np.uint8)
                label_ids.flat[:34] = np.arange(34)  # every id appears
                (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
                (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                Image.fromarray(label_ids).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
                out[split][stem] = (image, label_ids)
    return out


def read_all(source):
    """{image_id: record} of a data source."""
    return {source[i]["image_id"]: source[i] for i in range(len(source))}

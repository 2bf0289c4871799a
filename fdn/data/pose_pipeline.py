"""The pose crops of SimpleBaseline on grain: person box -> fixed-aspect crop, random scale, rotation and flip.

``fdn.data.pipeline``'s ``train_dataset`` / ``eval_dataset`` use these transforms instead of the segmentation
ones when given ``pose=PoseAugment(...)`` (``augment_for(dataset)`` has the published settings). Per record
(``fdn.data.pose_records``; a record without a box uses the whole image, e.g. a demo image with keypoints):

Training (``PoseTrainTransform``), drawn in this order from the element's generator, as SimpleBaseline's
``JointsDataset``: scale ``s = clip(N(0,1) * sf + 1, 1 - sf, 1 + sf)`` multiplies the box (sf 0.25 MPII, 0.3
COCO); with probability 0.6 a rotation ``clip(N(0,1) * rf, -2 rf, 2 rf)`` degrees (rf 30 MPII, 40 COCO), else 0;
with probability 0.5 a horizontal flip that also swaps left/right joints (``fdn.pose.joints``). Then the box is
fixed to the crop's aspect, enlarged by 1.25 and warped (bilinear) to the crop: ``fdn.pose.affine``. Evaluation
(``PoseEvalTransform``): the same crop without the random parts; padding slots (``{}``) become ``valid`` False.

Each example::

    image          float32 (H, W, 3)  normalised like the segmentation crops (outside the image: the mean, i.e. 0)
    keypoints      float32 (K, 3)     x, y in crop pixels (0-based, pixel centres at integers), v in {0, 1}:
                                      1 = labelled and inside the crop (x, y in [-0.5, W - 0.5) x [-0.5, H - 0.5))
    keypoint_norm  float32 ()         the record's PCK normaliser times the crop's scale (crop pixels; 0 = none)
    area           float32 ()         the record's area times the scale squared (crop pixels^2; MPII 0)
    center, scale  float32 (2,)       the crop box in image pixels: centre (x, y) and (w, h) after the aspect fix,
                                      x1.25 and the random scale
    affine         float32 (2, 3)     crop pixels -> image pixels (predictions back to the original image)
    image_id       int64 ()           int() of the record's stem where it is a number (MPII, COCO), else -1
    person_id      int64 ()
    box_score      float32 ()         the person box's detector score (1 for ground-truth boxes; ``oks.rescore``)
    keypoint_flip  int32 (K,)         the joint each joint becomes in a mirror image (``joints.flip_permutation``):
                                      what ``fdn.tasks.Pose``'s flip test reads, as on every pose batch
    valid          bool ()            evaluation only, as the other evaluation batches

Defaults: input 256x256 (MPII), 256x192 (COCO) as (H, W): ``INPUT_SIZE``.

Person detections instead of ground-truth boxes (SimpleBaseline's COCO numbers use a detector's boxes):
``DetectionSource(source, fdn.pose.oks.read_person_detections(path))`` is an evaluation source of one crop per
detection, the image taken from a record of the same image. Images without any annotated person have no record,
so their detections are left out (``skipped`` counts them): on COCO val2017 that drops the false positives on
images without people, so AP comes out somewhat higher than SimpleBaseline's evaluation over all 5,000 images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fdn.conventions import IMAGENET_MEAN, normalise
from fdn.pose import affine, joints


@dataclasses.dataclass(frozen=True)
class PoseAugment:
    """The pose crop's settings (picklable, for grain workers). ``scale_factor`` / ``rotation_factor`` 0 turn the
    random scale / rotation off, ``flip_prob`` 0 the flip."""

    num_joints: int
    flip_pairs: tuple[tuple[int, int], ...] = ()
    scale_factor: float = 0.0
    rotation_factor: float = 0.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    box_scale: float = 1.25

    def flip_permutation(self) -> np.ndarray:
        return joints.flip_permutation(self.num_joints, self.flip_pairs)


def _published(skeleton, scale_factor, rotation_factor):
    return PoseAugment(skeleton.num_joints, skeleton.flip_pairs, scale_factor, rotation_factor)


AUGMENT = {
    joints.MPII.name: _published(joints.MPII, 0.25, 30.0),
    joints.COCO.name: _published(joints.COCO, 0.3, 40.0),
}
INPUT_SIZE = {joints.MPII.name: (256, 256), joints.COCO.name: (256, 192)}
PAD_RGB = tuple(int(round(v)) for v in IMAGENET_MEAN * 255)  # the mean colour: 0 after normalising


def augment_for(dataset: str) -> PoseAugment:
    """SimpleBaseline's training settings for ``mpii_human_pose`` or ``coco_keypoints`` (a ``UserError`` for
    another name)."""
    return AUGMENT[joints.skeleton(dataset).name]


def person_crops(dataset: str) -> PoseAugment | None:
    """``augment_for(dataset)`` for a pose dataset (``joints.is_pose_dataset``), None for any other: what
    ``pipeline.train_dataset`` / ``eval_dataset`` take as ``pose`` for the dataset a config names."""
    return augment_for(dataset) if joints.is_pose_dataset(dataset) else None


def train_crop(dataset: str, crop_size: int, crop_width: int = 0) -> tuple[int, int]:
    """(H, W) of the training crops: ``crop_size`` high and ``crop_width`` wide, or where the width is 0, as
    wide as the dataset's SimpleBaseline input (``INPUT_SIZE``: COCO's 3:4, so 256 -> 256x192; square else)."""
    h = int(crop_size)
    if crop_width:
        return h, int(crop_width)
    if joints.is_pose_dataset(dataset):
        ih, iw = INPUT_SIZE[joints.skeleton(dataset).name]
        return h, int(round(h * iw / ih))
    return h, h


def _pair(size):
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def person_box(record):
    """(centre, (w, h)) of the record's person box, or of the whole image when the record has none."""
    if "box_center" in record:
        return np.asarray(record["box_center"], np.float64), np.asarray(record["box_size"], np.float64)
    h, w = np.asarray(record["image"]).shape[:2]
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0]), np.array([float(w), float(h)])


def numeric_id(image_id) -> int:
    """``int(image_id)`` for a numeric stem (MPII, COCO), else -1."""
    text = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
    return int(text) if text.isdigit() else -1


def crop_example(record, crop_size, center, box_size, perm, rotation=0.0, flip=False):
    """The example of one record cropped at the box (``box_size`` already with the crop's aspect and scale);
    ``perm`` is the skeleton's flip permutation (applied to the joints when ``flip``, and carried as
    ``keypoint_flip``)."""
    matrix = affine.crop_affine(center, box_size, crop_size, rotation, flip)
    image = affine.warp_image(np.asarray(record["image"]), matrix, crop_size, fill=PAD_RGB)
    keypoints = np.asarray(record["keypoints"], np.float64).copy()
    keypoints[:, :2] = affine.apply(matrix, keypoints[:, :2])
    if flip:
        keypoints = keypoints[perm]
    h, w = crop_size
    inside = (keypoints[:, 0] >= -0.5) & (keypoints[:, 0] < w - 0.5)
    inside &= (keypoints[:, 1] >= -0.5) & (keypoints[:, 1] < h - 0.5)
    keypoints[:, 2] = ((keypoints[:, 2] > 0) & inside).astype(np.float64)
    keypoints[keypoints[:, 2] == 0, :2] = 0.0
    scale = affine.scale_of(matrix)
    return {
        "image": normalise(image),
        "keypoints": keypoints.astype(np.float32),
        "keypoint_norm": np.float32(float(record.get("keypoint_norm", 0.0)) * scale),
        "area": np.float32(float(record.get("area", 0.0)) * scale * scale),
        "center": np.asarray(center, np.float32),
        "scale": np.asarray(box_size, np.float32),
        "affine": affine.invert(matrix).astype(np.float32),
        "image_id": np.int64(numeric_id(record.get("image_id", ""))),
        "person_id": np.int64(int(record.get("person_id", -1))),
        "box_score": np.float32(record.get("box_score", 1.0)),
        "keypoint_flip": np.asarray(perm, np.int32),
    }


class PoseTrainTransform:
    """Record -> augmented pose crop (a grain random-map callable: ``fn(record, rng)``)."""

    def __init__(self, crop_size, augment: PoseAugment):
        self.crop_size = _pair(crop_size)
        self.augment = augment
        self.aspect = self.crop_size[1] / self.crop_size[0]
        self.perm = augment.flip_permutation()

    def __call__(self, record, rng):
        a = self.augment
        center, size = person_box(record)
        s = float(np.clip(rng.standard_normal() * a.scale_factor + 1, 1 - a.scale_factor, 1 + a.scale_factor))
        rotation = 0.0
        if rng.random() < a.rotation_prob:
            rotation = float(
                np.clip(rng.standard_normal() * a.rotation_factor, -2 * a.rotation_factor, 2 * a.rotation_factor)
            )
        flip = bool(rng.random() < a.flip_prob)
        box = affine.fixed_aspect(size, self.aspect, a.box_scale) * s
        return crop_example(record, self.crop_size, center, box, self.perm, rotation, flip)


class PoseEvalTransform:
    """Record -> the centred pose crop (no randomness); ``{}`` (a padding slot) -> an all-zero, invalid example."""

    def __init__(self, crop_size, augment: PoseAugment):
        self.crop_size = _pair(crop_size)
        self.augment = augment
        self.aspect = self.crop_size[1] / self.crop_size[0]
        self.perm = augment.flip_permutation()

    def __call__(self, record):
        if not record:
            h, w = self.crop_size
            k = self.augment.num_joints
            out = {
                "image": np.zeros((h, w, 3), np.float32),
                "keypoints": np.zeros((k, 3), np.float32),
                "keypoint_norm": np.float32(0),
                "area": np.float32(0),
                "center": np.zeros(2, np.float32),
                "scale": np.ones(2, np.float32),
                "affine": np.eye(2, 3, dtype=np.float32),
                "image_id": np.int64(-1),
                "person_id": np.int64(-1),
                "box_score": np.float32(0),
                "keypoint_flip": np.asarray(self.perm, np.int32),
            }
            out["valid"] = np.bool_(False)
            return out
        center, size = person_box(record)
        box = affine.fixed_aspect(size, self.aspect, self.augment.box_scale)
        out = crop_example(record, self.crop_size, center, box, self.perm)
        out["valid"] = np.bool_(True)
        return out


class DetectionSource:
    """Random-access records of person-detection boxes (``oks.read_person_detections``) over the images of a
    pose ``source``: each detection becomes a record with its box, its ``box_score`` and no keypoints.

    Finding the images reads every record of ``source`` once (decoding its image: about a minute for COCO
    val2017's 6,352 persons on one core).
    """

    def __init__(self, source, detections, num_joints):
        first: dict = {}
        for i in range(len(source)):
            first.setdefault(numeric_id(source[i]["image_id"]), i)
        self.source = source
        self.num_joints = int(num_joints)
        self.items = [(first[d["image_id"]], d) for d in detections if d["image_id"] in first]
        self.skipped = len(detections) - len(self.items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        index, det = self.items[int(i)]
        record = self.source[index]
        x, y, w, h = (float(v) for v in det["bbox"])
        return {
            "image": record["image"],
            "image_id": record["image_id"],
            "person_id": int(i),
            "keypoints": np.zeros((self.num_joints, 3), np.float32),
            "box_center": np.array([x + 0.5 * w, y + 0.5 * h]),
            "box_size": np.array([w, h]),
            "box_score": float(det["score"]),
        }

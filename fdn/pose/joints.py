"""The joint tables of the pose datasets, in one place: names, left/right flip pairs, OKS sigmas, PCKh groups.

Why one module: the data pipeline swaps left and right joints when it mirrors a crop, the flip test swaps them
back, and the metrics group them; a second copy of any table would let those drift apart. Orders are the
datasets' own (MPII as SimpleBaseline's converted annotations and ``gt_valid.mat``; COCO as
``person_keypoints_*.json``), so a record's joint k is joint k here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fdn.errors import UserError


class UnknownSkeletonError(UserError, KeyError):
    """A dataset name without a joint table here (a config naming a pose dataset fdn does not know)."""


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """The joints of one dataset: ``names`` in the dataset's order, the ``flip_pairs`` (left, right) that a
    horizontal mirror swaps, and the ``limbs`` (joint pairs) that pictures draw as lines."""

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...] = ()

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def flip_permutation(self) -> np.ndarray:
        return flip_permutation(self.num_joints, self.flip_pairs)


def flip_permutation(num_joints: int, flip_pairs) -> np.ndarray:
    """Index array ``p`` with ``mirrored[k] = original[p[k]]``: the joint order after a horizontal flip."""
    perm = np.arange(num_joints)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


# fmt: off
# MPII: legs -> pelvis -> thorax -> upper neck -> head top; wrists -> elbows -> shoulders -> thorax.
MPII_LIMBS = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15),
)
# COCO: the person category's "skeleton" in person_keypoints_*.json, made 0-based.
COCO_LIMBS = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# fmt: on

MPII = Skeleton(
    name="mpii_human_pose",
    names=(
        "r_ankle",
        "r_knee",
        "r_hip",
        "l_hip",
        "l_knee",
        "l_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "r_wrist",
        "r_elbow",
        "r_shoulder",
        "l_shoulder",
        "l_elbow",
        "l_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=MPII_LIMBS,
)

COCO = Skeleton(
    name="coco_keypoints",
    names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    limbs=COCO_LIMBS,
)

SKELETONS = {skeleton.name: skeleton for skeleton in (MPII, COCO)}

# COCO's per-keypoint OKS sigmas, as pycocotools' ``Params.kpt_oks_sigmas`` (and COCO's evaluation page).
COCO_OKS_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)

# MPII PCKh: the head size is SC_BIAS x the head box diagonal; the mean leaves out pelvis and thorax; the table's
# groups average the left and right joint (Head is the head top alone), as the reference evaluation.
PCKH_HEAD_SIZE_FACTOR = 0.6
PCKH_EXCLUDED_FROM_MEAN = (6, 7)
PCKH_GROUPS = (
    ("Head", (9,)),
    ("Shoulder", (12, 13)),
    ("Elbow", (11, 14)),
    ("Wrist", (10, 15)),
    ("Hip", (2, 3)),
    ("Knee", (1, 4)),
    ("Ankle", (0, 5)),
)


def is_pose_dataset(dataset: str) -> bool:
    """Whether ``dataset`` (optionally with ``/config``) has a joint table here: its records are persons to crop
    (``fdn.data.pose_pipeline``), not whole images (``fdn_shapes``' keypoints ride the segmentation crops)."""
    return dataset.split("/")[0] in SKELETONS


def skeleton(dataset: str) -> Skeleton:
    """The skeleton of ``dataset`` (``mpii_human_pose`` or ``coco_keypoints``, optionally with ``/config``)."""
    key = dataset.split("/")[0]
    if key not in SKELETONS:
        raise UnknownSkeletonError(f"no joint table for dataset {dataset!r}; known: {sorted(SKELETONS)}")
    return SKELETONS[key]

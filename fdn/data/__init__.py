"""Datasets and input pipeline of fdn.

Importing this package registers the tfds builders ``voc_sbd``, ``nyu_depth_v2_labeled``,
``cityscapes_fine``, ``fdn_shapes``, ``image_folder`` (``image_folder/NAME``: your own images) and the pose datasets
``mpii_human_pose`` and ``coco_keypoints`` (one record per person: ``fdn.data.pose_records``). After that,
``tfds.data_source(NAME, data_dir=D)[split][i]`` is a dict with ``image`` (H, W, 3) uint8 at the original size,
``image_id`` (the file stem, ``str``) and, as the dataset has them, ``segmentation`` (H, W) uint8 (255 = ignore)
and ``depth`` (H, W) float32 metres (0 = invalid). Nothing here imports TensorFlow. Prepare with
``python -m fdn.data.prepare NAME``.
"""

from fdn.data import (  # noqa: F401  (registers the builders)
    cityscapes,
    coco_keypoints,
    image_folder,
    mpii,
    nyu_depth,
    shapes,
    voc_sbd,
)

"""Full pose training on MPII Human Pose (16 joints, 256x256 person crops, PCKh@0.5), SimpleBaseline's schedule.

COMMAND::

    python -m fdn.data.prepare mpii_human_pose --manual_dir=/data/mpii --data_dir=/data/tfds
    python -m fdn.train --config=configs/mpii_train.py --workdir=runs/arch0_mpii \\
        --config.genotype=arch0 --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
    python -m fdn.evaluate --checkpoint=runs/arch0_mpii/best_model      # per-joint PCKh@0.5, flip test

Task ``pose`` (``configs/pose_common.py``): 16 heatmaps at stride 4 (64x64), Gaussian sigma 2, Adam 1e-3 for
140 epochs (x0.1 at 90 and 120), batch 32, flip test. The person crops (box x1.25, scale +-0.25, rotation
+-30 deg with p 0.6, flip with the joint swap) are ``fdn.data.pose_pipeline``'s MPII setting; ``keypoint_norm``
is the head size, so the task's PCK is PCKh@0.5 over every visible joint (the reference's table mean, which
leaves out pelvis and thorax, is ``fdn.pose.pckh``'s). Reference (ResNet-50, flip test): mean 88.53 on val.
``:tiny`` runs seconds on a miniature tree.
"""

from configs import common, pose_common


def get_config(arg=None):
    arg = common.parse_arg(arg, tiny=False)
    c = pose_common.pose_config("mpii_human_pose")
    c.data.train_split = "train"
    c.data.eval_split = "valid"  # Tompson's validation persons, scored against gt_valid.mat (fdn.data.mpii)
    c.data.crop_size = 256
    c.eval.crop_size = (256, 256)
    if arg.tiny:
        pose_common.tiny(c)
    return c

"""Full pose training on COCO keypoints (17 joints, 256x192 person crops from ground-truth boxes), SimpleBaseline's
schedule.

COMMAND::

    python -m fdn.data.prepare coco_keypoints --manual_dir=/data/coco --data_dir=/data/tfds
    python -m fdn.train --config=configs/coco_pose_train.py --workdir=runs/arch0_coco_pose \\
        --config.genotype=arch0 --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
    python -m fdn.evaluate --checkpoint=runs/arch0_coco_pose/best_model   # per-joint PCK, flip test

Task ``pose`` (``configs/pose_common.py``): 17 heatmaps at stride 4 (64x48), sigma 2, Adam 1e-3 for 140 epochs
(x0.1 at 90 and 120), batch 32, flip test. Person crops: box with aspect 3:4 x1.25, scale +-0.3, rotation
+-40 deg with p 0.6, flip with the joint swap (``fdn.data.pose_pipeline``'s COCO setting). The training loop's
score is PCK@0.5 of sqrt(area) (``keypoint_norm``); COCO's own OKS AP is ``fdn.pose.oks``'s. Reference
(ResNet-50, 256x192, flip test, detected boxes): AP 0.704 on val2017.
"""

from configs import common, pose_common


def get_config(arg=None):
    arg = common.parse_arg(arg, tiny=False)
    c = pose_common.pose_config("coco_keypoints")
    c.data.train_split = "train"
    c.data.eval_split = "val"
    # The input is 256x192 (H x W): data.crop_size is the height; data.crop_width 0 takes the width from the
    # COCO pipeline's 3:4 (fdn.data.pose_pipeline.train_crop).
    c.data.crop_size = 256
    c.eval.crop_size = (256, 192)
    if arg.tiny:
        pose_common.tiny(c)
    return c

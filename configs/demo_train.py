"""Full training on the embedded demo data (fdn_shapes), sized for a couple of minutes on a 2-core CPU.

COMMAND::

    python -m fdn.train --config=configs/demo_train.py --workdir=workdirs/demo_train
    python -m fdn.train --config=configs/demo_train.py --workdir=workdirs/demo_train \\
        --config.genotype=workdirs/demo#1 --config.data.data_dir=workdirs/demo/data   # the demo search's best
    python -m fdn.train --config=configs/demo_train.py:depth --workdir=workdirs/demo_depth   # depth (berHu)
    python -m fdn.train --config=configs/demo_train.py:pose --workdir=workdirs/demo_pose     # pose (heatmaps)
    python -m fdn.evaluate --checkpoint=workdirs/demo_train/best_model --png_dir=workdirs/demo_train/png

fdn_shapes is prepared into ``--config.data.data_dir`` (default ``WORKDIR/data``) on first use. The model has
the released settings (agg 64, separable repeats 2, auxiliary cells in training only) and a random encoder;
the schedule is Light-Weight RefineNet's (``configs/train_common.py``) with its three stages shortened to
6 + 3 + 3 epochs of 40 steps (batch 8, 64-pixel crops) and learning rates for a random encoder; evaluation
every 3 epochs on 96 val images. Add ``--config.teacher.checkpoint=workdirs/demo/teacher`` to distil from the
search's teacher.
``:depth`` trains the depth head on the same images (berHu loss; RMSE etc.); ``:pose`` trains K = 5 stride-4
heatmaps of the nearest object's landmarks (fdn_shapes' keypoints; PCK@0.5 of its radius) with Adam, 14 + 3 + 3
epochs of 40 steps, on 96-pixel crops of images scaled 0.65-1.0 (the landmarks span the object, so crops keep
most of it), and scores whole 128x160 images with the flip test; ``:tiny`` is for tests.
"""

from configs import common, train_common


def get_config(arg=None):
    arg = common.parse_arg(arg, depth=False, pose=False, tiny=False)
    c = train_common.train_config()
    c.genotype = "arch0"
    c.data.name = "fdn_shapes"
    c.data.train_split = "train"
    c.data.eval_split = "val"
    c.data.auto_prepare = True
    c.data.batch_size = 8
    c.data.crop_size = 64
    c.data.min_side = 64
    c.data.scale_range = (0.5, 1.0)
    c.eval.crop_size = (128, 160)  # fdn_shapes images are 128x160: whole images
    c.eval.batch_size = 16
    c.eval.num_examples = 96
    c.eval.every_epochs = 3
    c.eval.omit_classes = ()
    c.optim.stage_epochs = (6, 3, 3)
    c.optim.steps_per_epoch = 40
    c.optim.reference_batch = 8
    # RF-LW's encoder rates (5e-4 ...) assume an ImageNet encoder; the demo's is random and must learn as
    # fast as the decoder, in 480 steps: both start at 2e-2 (SGD momentum 0.9, clip 3), then halve per stage.
    c.optim.enc_lrs = (2e-2, 1e-2, 5e-3)
    c.optim.dec_lrs = (2e-2, 1e-2, 5e-3)
    c.checkpoint_every_steps = 40
    c.log_every_steps = 20
    if arg.depth:
        c.task = "depth"
        c.model.num_classes = 1
        c.teacher.weight = 0.0
    if arg.pose:
        _pose(c)
    if arg.tiny:
        _tiny(c)
    return c


def _pose(c):
    from fdn.data import shapes

    c.task = "pose"
    c.model.num_classes = shapes.NUM_KEYPOINTS
    c.teacher.weight = 0.0
    c.data.crop_size = 96
    c.data.min_side = 80
    c.data.scale_range = (0.65, 1.0)
    c.eval.flip_test = True
    c.eval.skeleton = shapes.KEYPOINT_SKELETON
    # Adam (SimpleBaseline's optimiser) at 1e-3 for most of the run: with 12 epochs of which 6 at 1e-3 (then x0.1
    # twice) PCK stopped rising when the rate dropped (0.15 at epoch 6, 0.145 at 12).
    c.optim.optimizer = "adam"
    c.optim.stage_epochs = (14, 3, 3)
    c.optim.enc_lrs = (1e-3, 2e-4, 5e-5)
    c.optim.dec_lrs = (1e-3, 2e-4, 5e-5)
    c.optim.weight_decay = 0.0


def _tiny(c):
    """Seconds, for tests: agg 8, 32-pixel crops, 2 + 1 + 1 epochs of 2 steps, 8 val images."""
    c.model.agg_size = 8
    c.data.batch_size = 4
    c.data.crop_size = 32
    c.data.min_side = 32
    c.eval.crop_size = (32, 32)
    c.eval.min_side = 32
    c.eval.batch_size = 4
    c.eval.num_examples = 8
    c.eval.every_epochs = 2
    c.optim.stage_epochs = (2, 1, 1)
    c.optim.steps_per_epoch = 2
    c.checkpoint_every_steps = 3
    c.log_every_steps = 2
    c.progress = False

"""Full training of a genotype for depth on NYU-Depth v2 (795 labelled train frames, 654 test frames).

COMMAND::

    python -m fdn.data.prepare nyu_depth_v2_labeled --manual_dir=/data/nyu --data_dir=/data/tfds
    python -m fdn.train --config=configs/nyud_train.py --workdir=runs/arch0_nyud \\
        --config.genotype=arch0 --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
    python -m fdn.evaluate --checkpoint=runs/arch0_nyud/best_model --split=test

Task ``depth``: the Segmenter's 1-channel head (raw metres), berHu loss (c = 0.2 max|err|) over valid pixels
(depth 0 = invalid; the labelled set's maps are in-painted, so every pixel is valid there), auxiliary heads
with the same loss; metrics RMSE, log-RMSE, abs rel, sq rel, log10 and delta < 1.25^k on whole 480x640 test
frames, single scale, no flip. Schedule: Light-Weight RefineNet's (``configs/train_common.py``; its public
config is the NYU one), crop 500 after scale 0.5-2.0 (frames smaller than the crop are padded with invalid
depth). The paper's headline RMSE (Papers with Code): **0.523 (arch0), 0.526 (arch1), 0.525 (arch2)**; how
they were trained (extra unlabelled NYU frames, as RF-LW's NYU models?) is not published.
``:tiny`` runs seconds on the miniature NYU tree of the tests.
"""

from configs import common, train_common


def get_config(arg=None):
    arg = common.parse_arg(arg, tiny=False)
    c = train_common.train_config()
    c.task = "depth"
    c.model.num_classes = 1
    c.data.name = "nyu_depth_v2_labeled"
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.worker_count = 4
    c.eval.crop_size = (480, 640)  # whole frames
    c.eval.min_side = 0
    c.eval.batch_size = 6
    c.teacher.weight = 0.3  # used only with --config.teacher.checkpoint (a depth model)
    if arg.tiny:
        c.data.worker_count = 0
        c.model.agg_size = 8
        c.data.batch_size = 2
        c.data.crop_size = 32
        c.data.min_side = 32
        c.eval.crop_size = (32, 32)
        c.eval.min_side = 32
        c.eval.batch_size = 2
        c.optim.stage_epochs = (1, 1, 1)
        c.optim.steps_per_epoch = 2
        c.eval.every_epochs = 1
        c.progress = False
    return c

"""Full training of a genotype on PASCAL VOC 2012 + SBD (train_aug, 10,582 images), evaluated on VOC val.

COMMAND::

    python -m fdn.data.prepare voc_sbd --manual_dir=/data/voc --data_dir=/data/tfds
    python -m fdn.convert --torchvision --out=ckpt/mbv2_imagenet        # an ImageNet MobileNet-v2 encoder
    python -m fdn.train --config=configs/voc_train.py --workdir=runs/arch0_voc \\
        --config.genotype=arch0 --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
    # the best design of a search instead:   --config.genotype=runs/voc_search#1
    # knowledge distillation from a teacher: --config.teacher.checkpoint=ckpt/teacher

The released models' settings: agg 64, separable repeats 2, auxiliary cells (weight 0.15 each) in training
only; the exported ``best_model`` / ``final_model`` have no auxiliary cells (``DecoderSettings.released()``).
Schedule: the NAS paper does not publish its final-training schedule, so this is Light-Weight RefineNet's
(paper.md 4, ``configs/train_common.py``): SGD momentum 0.9, wd 1e-5, 3 stages x 100 epochs, encoder lr
5e-4 / 2.5e-4 / 1e-4, decoder 5e-3 / 2.5e-3 / 1e-3 at batch 6 (scaled linearly with ``data.batch_size``),
crop 500, scale 0.5-2.0, validation every 5 epochs on whole val images (single scale, no flip). Polyak
average (0.99) of all parameters, evaluated and exported. Whether the paper pre-trained on COCO (RF-LW did)
is unknown; this config does not. Paper target (unverified recollection, paper.md 5.4): ~78% mIoU for arch0.
``:tiny`` runs seconds on a miniature tree (tests).
"""

from configs import common, train_common


def get_config(arg=None):
    arg = common.parse_arg(arg, tiny=False)
    c = train_common.train_config()  # every default is RF-LW's / the released models'
    c.data.name = "voc_sbd"
    c.data.train_split = "train_aug"
    c.data.eval_split = "val"
    c.data.worker_count = 4
    c.eval.crop_size = (512, 512)  # VOC images are at most 500x500: padded with ignore, never rescaled
    c.eval.min_side = 0
    if arg.tiny:
        c.data.worker_count = 0
        c.model.agg_size = 8
        c.data.batch_size = 2
        c.data.crop_size = 32
        c.eval.crop_size = (64, 64)
        c.eval.batch_size = 2
        c.optim.stage_epochs = (1, 1, 1)
        c.optim.steps_per_epoch = 2
        c.eval.every_epochs = 1
        c.progress = False
    return c

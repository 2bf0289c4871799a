"""The paper's search on VOC 2012 + SBD (paper.md 3): meta split of train_aug, N=4000 cached crops, PPO.

COMMAND::

    python -m fdn.data.prepare voc_sbd --manual_dir=/data/voc --data_dir=/data/tfds
    python -m fdn.search --config=configs/voc.py --workdir=runs/voc_search \\
        --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_voc \\
        --config.teacher.kind=checkpoint --config.teacher.path=ckpt/teacher

The official search starts every candidate from the VOC-trained RF-LW MobileNet-v2 encoder, which is no
longer published: give any fdn checkpoint whose encoder you want (``python -m fdn.convert`` makes one from
torchvision's ImageNet weights). The RefineNet-LW-152 teacher is gone too: ``teacher.kind`` is ``none`` by
default; point it at an fdn checkpoint or a store of precomputed logits. ``:tiny`` shrinks everything to
seconds for tests (a miniature VOC tree).
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, tiny=False)
    c = common.search_config()  # every default is the paper's
    c.data.name = "voc_sbd"
    c.data.split = "train_aug"
    c.data.val_examples = 1024  # the official val loader drops the last partial batch of 64: 1,024 of 1,059
    c.data.worker_count = 2
    c.teacher.kind = "none"
    c.candidate.stage1.num_examples = 4000
    c.candidate.compilation_cache_dir = "~/.cache/fdn/xla"
    c.log.plot_every = 25
    if arg.tiny:
        _tiny(c)
    return c


def _tiny(c):
    """A miniature tree of a few images: 2 candidates of a few steps, 32-pixel crops, agg 8."""
    c.num_candidates = 2
    c.data.val_examples = 0
    c.data.worker_count = 0
    c.data.cache_batch = 4
    cc = c.candidate
    cc.stage1.num_examples = 8
    cc.stage1.crop_size = 32
    cc.stage1.min_side = 32
    cc.stage1.epochs = 1
    cc.stage1.batch_size = 4
    cc.stage2.steps_per_epoch = 2
    cc.stage2.batch_size = 2
    cc.stage2.crop_size = 32
    cc.stage2.min_side = 32
    cc.val.crop_size = 32
    cc.val.min_side = 32
    cc.val.batch_size = 2
    cc.decoder.agg_size = 8
    cc.compilation_cache_dir = ""
    c.log.plot_every = 0
    c.log.progress = False

"""Shared settings of the final-training configs (``fdn.train``): every field with its default.

The schedule is Light-Weight RefineNet's (paper.md 4; the NAS paper's own final schedule is not published):
SGD with momentum 0.9 and weight decay 1e-5, three stages whose learning rates are 5e-4 / 2.5e-4 / 1e-4 for
the encoder and 5e-3 / 2.5e-3 / 1e-3 for the decoder, 100 epochs each, batch 6, crop 500, scale 0.5-2.0,
validation every 5 epochs. ``optim.stage_epochs`` scales the length; ``optim.scale_lr_with_batch`` scales
the learning rates linearly with ``data.batch_size / optim.reference_batch``. Deviations from RF-LW: BN is
trained (RF-LW freezes it; the NAS search trains it), each sub-network's gradient is clipped to norm 3.0
(as the search's stage 2), and the momentum buffers carry over between stages (RF-LW makes new optimisers).
"""

from __future__ import annotations

import ml_collections


def train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init (when no encoder checkpoint), data order and augmentation
    c.genotype = "arch0"  # released name, genotype literal, or WORKDIR#rank of a search (fdn.train.genotype_source)
    c.task = "segmentation"  # segmentation | depth | pose

    c.model = ml_collections.ConfigDict()
    c.model.num_classes = 0  # output channels: 0 = the dataset's class count (fdn.data.catalog); depth: 1
    c.model.agg_size = 64  # the released models' decoder width
    c.model.repeats = 2  # the released models' separable-conv depth
    c.model.aux_cell = True  # auxiliary cells in training; the exported model drops them (aux_cell False)
    c.model.expand_first_block = True  # the official MobileNet-v2 layout

    c.data = ml_collections.ConfigDict()
    c.data.name = "voc_sbd"  # a registered fdn tfds dataset
    c.data.train_split = "train_aug"
    c.data.eval_split = "val"
    c.data.data_dir = ""  # tfds data dir ('' = tfds default, or WORKDIR/data when auto_prepare)
    c.data.auto_prepare = False  # prepare the dataset first if missing (only datasets without downloads)
    c.data.batch_size = 6  # global batch (all devices, all hosts); divisible by the device count
    c.data.crop_size = 500  # training crop side
    c.data.min_side = 0  # shorter side after scaling is at least this (0 = the crop side)
    c.data.scale_range = (0.5, 2.0)  # RF-LW's random scale
    c.data.worker_count = 0  # grain worker processes (0 = threads in this process)

    c.eval = ml_collections.ConfigDict()
    c.eval.every_epochs = 5  # validate (single scale, no flip) every n epochs and at the end
    c.eval.crop_size = (512, 512)  # images are padded (ignore / invalid) or centrally cropped to this
    c.eval.min_side = 0  # shorter side scaled up to this first (0 = never rescale: full images)
    c.eval.batch_size = 8  # global; divisible by the device count
    c.eval.num_examples = 0  # >0: only the first n images of the split (quick looks)
    c.eval.omit_classes = ()  # classes left out of the mIoU (VOC: none, background counts)
    c.eval.flip_test = False  # pose: average with the mirrored image's heatmaps (SimpleBaseline's flip test)
    c.eval.skeleton = ()  # pose: (joint, joint) pairs joined by lines in pictures (fdn.evaluate, fdn.predict)

    c.encoder = ml_collections.ConfigDict()
    c.encoder.checkpoint = ""  # fdn checkpoint whose encoder starts training ('' = random, seeded)

    c.teacher = ml_collections.ConfigDict()
    c.teacher.checkpoint = ""  # fdn checkpoint of a teacher for knowledge distillation ('' = none)
    c.teacher.weight = 0.3  # weight of the MSE between student and (resized) teacher outputs

    c.loss = ml_collections.ConfigDict()
    c.loss.aux_weight = 0.15  # weight of each auxiliary head's loss (0 = no auxiliary heads)
    c.loss.berhu_threshold = 0.2  # depth: c = threshold * max|err|

    c.optim = ml_collections.ConfigDict()
    c.optim.stage_epochs = (100, 100, 100)  # RF-LW's three stages
    c.optim.enc_lrs = (5e-4, 2.5e-4, 1e-4)  # encoder SGD learning rate per stage
    c.optim.dec_lrs = (5e-3, 2.5e-3, 1e-3)  # decoder SGD learning rate per stage
    c.optim.optimizer = "sgd"  # sgd (RF-LW) | adam (SimpleBaseline's pose schedule)
    c.optim.momentum = 0.9  # sgd only
    c.optim.weight_decay = 1e-5  # coupled L2 (PyTorch SGD weight_decay)
    c.optim.grad_clip = 3.0  # global-norm clip per sub-network (0 = off)
    c.optim.reference_batch = 6  # the batch the learning rates are written for
    c.optim.scale_lr_with_batch = True  # lr *= batch_size / reference_batch
    c.optim.steps_per_epoch = 0  # 0 = train examples // batch_size

    c.polyak_decay = 0.99  # average of all parameters, updated every step; evaluated and exported

    c.checkpoint_every_steps = 1000  # also saved at every evaluation and at the end
    c.log_every_steps = 50  # scalars to metrics.jsonl / TensorBoard, a log line
    c.progress = True  # tqdm bar with ETA
    return c

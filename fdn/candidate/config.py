"""Every hyper-parameter of one candidate's training and evaluation, with the paper's defaults (paper.md 3).

The search configs embed this as ``config.candidate``; override single fields from the command line, e.g.
``--config.candidate.stage1.epochs=2``.
"""

from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    # Decoder settings during the search (the released models use 64 / 2 / False).
    c.decoder = ml_collections.ConfigDict()
    c.decoder.agg_size = 48  # channels of every decoder cell (A)
    c.decoder.repeats = 1  # depth of each separable conv op
    c.decoder.aux_cell = True  # auxiliary heads get their own cell (the paper's auxiliary cells)

    # Stage 1: decoder only, on the cached encoder outputs of N augmented meta-train crops.
    c.stage1 = ml_collections.ConfigDict()
    c.stage1.num_examples = 4000  # N crops cached once for the whole search
    c.stage1.crop_size = 256  # crop side of the cached crops (features at 1/4: 64x64 for l1)
    c.stage1.min_side = 300  # shorter side after random scaling is at least this (R)
    c.stage1.epochs = 5  # passes over the cache; Polyak averages are written back after each
    c.stage1.batch_size = 64  # steps per epoch = num_examples // batch_size (remainder dropped)
    c.stage1.lr = 3e-3  # Adam
    c.stage1.weight_decay = 1e-5  # coupled L2 added to the clipped gradient (official HEAD; 0 in 2019)
    c.stage1.grad_clip = 3.0  # global-norm clip of the decoder gradient
    c.stage1.polyak_decay = 0.9  # avg <- decay * avg + (1 - decay) * params after every step
    c.stage1.kd_weight = 0.3  # weight of the MSE to the cached teacher logits (ignored without a teacher)
    c.stage1.aux_weight = 0.15  # weight of each auxiliary head's NLL
    c.stage1.feature_dtype = "float32"  # cached encoder outputs: 'float32' or 'bfloat16' (half the memory)

    # Stage 2: end to end on the meta-train stream.
    c.stage2 = ml_collections.ConfigDict()
    c.stage2.epochs = 1  # passes over meta-train; Polyak averages are written back after each
    c.stage2.steps_per_epoch = 0  # 0: len(meta-train) // batch_size, set by fdn.search.setup (297 on VOC+SBD)
    c.stage2.batch_size = 32  # images per step
    c.stage2.crop_size = 350  # training crop side
    c.stage2.min_side = 400  # shorter side after random scaling is at least this (R)
    c.stage2.enc_lr = 1e-3  # encoder SGD learning rate
    c.stage2.enc_momentum = 0.9  # encoder SGD momentum
    c.stage2.enc_weight_decay = 1e-5  # encoder coupled L2
    c.stage2.dec_lr = 3e-3  # decoder Adam learning rate (a fresh optimiser, not stage 1's)
    c.stage2.dec_weight_decay = 1e-5  # decoder coupled L2
    c.stage2.grad_clip = 3.0  # global-norm clip, separately for encoder and decoder
    c.stage2.polyak_decay = 0.99  # over encoder and decoder
    c.stage2.aux_weight = 0.15  # weight of each auxiliary head's NLL (no KD in stage 2)
    c.stage2.check_every = 50  # steps between host-side NaN/Inf checks of the loss
    # Where stage-2 crops are made: 'host' (grain + PIL, the reference) or 'device' (meta-train decoded once onto
    # the accelerator, each batch a function of (key, step): fdn.data.device_source; the same distribution, other
    # numbers, so a seed gives other rewards than with 'host').
    c.stage2.input = "host"

    # Validation on meta-val (the reward).
    c.val = ml_collections.ConfigDict()
    c.val.crop_size = 400  # central crop after scaling the shorter side up to min_side
    c.val.min_side = 400
    c.val.batch_size = 64
    c.val.omit_classes = [0]  # classes left out of the reward (background)
    c.val.cache_features = True  # stage 1: keep meta-val encoder outputs on the device (encoder is fixed)

    # Arithmetic of the stage programs (fdn.candidate.precision): 'float32', or 'bfloat16' activations on float32
    # master weights, optimiser states, Polyak averages, losses and BN statistics (`python -m fdn.bench precision`).
    c.precision = "float32"

    # Compilation.
    c.programs = "auto"  # 'universal': one compile per search (the genotype is data); 'per_genotype': one compile
    #                      per genotype, faster steps; 'auto': per genotype on a CPU when stage 1 is long enough to
    #                      repay the compiles (the paper's, not the demo's), else universal (fdn.candidate.programs)
    c.compilation_cache_dir = ""  # persistent XLA cache shared by runs ('' = off)
    return c

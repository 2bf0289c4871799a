"""Shared pieces of the search configs: the ``:arg`` parser and the full set of search settings.

Every field a search reads is defined here with its paper default (paper.md 3); ``configs/voc.py`` and
``configs/demo.py`` change what differs. With ``lock_config=True`` a misspelled override is an error.
"""

from __future__ import annotations

import ml_collections

from fdn.agents import default_config as agent_default_config
from fdn.candidate.config import default_config as candidate_default_config
from fdn.search.budget import default_config as reward_default_config


def parse_arg(arg: str | None, **defaults):
    """``'tiny,seed=3'`` -> ConfigDict(tiny=True, seed=3, ...): typed by the defaults (big_vision style)."""
    values = dict(defaults)
    for part in filter(None, (arg or "").split(",")):
        name, _, raw = part.partition("=")
        if name not in values:
            raise ValueError(f"unknown config arg {name!r}; known: {sorted(values)}")
        kind = type(values[name])
        if not raw:
            values[name] = True
        elif kind is bool:
            values[name] = raw.lower() in ("1", "true", "yes")
        else:
            values[name] = kind(raw)
    return ml_collections.ConfigDict(values)


def search_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 9314  # the official seed: agent, early stop, data order, meta split, every candidate's init
    c.num_candidates = 4000  # candidates to evaluate (the official search has no end and is stopped by hand)

    c.task = "segmentation"  # what candidates are scored by: 'segmentation' (the paper's reward) or 'pose' (PCK@0.5)
    c.agent = "ppo"  # ppo | reinforce | random
    c.agent_config = agent_default_config()

    c.data = ml_collections.ConfigDict()
    c.data.name = "voc_sbd"  # a registered fdn tfds dataset
    c.data.split = "train_aug"  # the search's training pool; split 90/10 into meta-train / meta-val
    c.data.data_dir = ""  # tfds data dir ('' = tfds default, or WORKDIR/data when auto_prepare)
    c.data.auto_prepare = False  # prepare the dataset first if missing (only for datasets without downloads)
    c.data.num_classes = 0  # 0 = from the dataset's features
    c.data.val_fraction = 0.1  # meta-val share
    c.data.val_examples = 0  # >0: score only the first n meta-val images (the official loader scores 1,024)
    c.data.scale_range = (0.7, 1.4)  # random scale of the training crops
    c.data.cache_batch = 64  # images per encoder call while the stage-1 cache is built
    c.data.worker_count = 0  # grain worker processes for the stage-2 stream (0 = threads in this process)

    c.encoder = ml_collections.ConfigDict()
    c.encoder.checkpoint = ""  # fdn model checkpoint whose encoder starts every candidate ('' = random, seeded)
    c.encoder.expand_first_block = True  # the official MobileNet-v2 layout
    c.encoder.calibrate_batches = 0  # >0: re-estimate the encoder's BN statistics on this many meta-train
    #                                  batches first (for random encoders: see fdn.models.bn_calibration)

    c.teacher = ml_collections.ConfigDict()
    c.teacher.kind = "none"  # none | checkpoint | logits | train (see fdn.search.teacher)
    c.teacher.path = ""  # checkpoint dir, .npy/.npz of logits, or where 'train' caches (default WORKDIR/teacher)
    c.teacher.train = ml_collections.ConfigDict()
    c.teacher.train.genotype = "arch0"  # the teacher's decoder design
    c.teacher.train.agg_size = 64  # wider than the candidates (48)
    c.teacher.train.repeats = 1
    c.teacher.train.steps = 300  # end-to-end Adam steps on the stage-2 stream (meta-train only)
    c.teacher.train.learning_rate = 2e-3
    c.teacher.train.from_encoder = True  # start from the search's encoder (pretrained or random)
    c.teacher.train.log_every = 50

    c.candidate = candidate_default_config()
    c.max_stage = 2  # 1: score candidates by their stage-1 reward only (no end-to-end stage; quick looks)
    c.compile_ahead = False  # propose one candidate ahead and compile it while the current one trains: the
    #                          same results as parallel.lag=1 (a one-step policy lag, so off by default); it
    #                          raises the lag to at least 1 and, with one worker, precompiles the next candidate

    c.compile_during_setup = True  # compile the universal programs in a thread while the teacher trains (cold start)
    c.parallel = ml_collections.ConfigDict()  # candidates trained at once, one per local device (fdn.search.parallel)
    c.parallel.workers = 0  # 0 = every local accelerator device (1 on CPU); a runtime key: it never changes results
    c.parallel.lag = 0  # candidate i is proposed (and early-stopped) knowing the rewards of 0..i-1-lag; 0 = the
    #                     paper's sequential search; results depend on (seed, lag), so use lag >= workers

    c.reward = reward_default_config()  # quality (the paper), or under a latency / params / flops budget

    c.early_stop = ml_collections.ConfigDict()
    c.early_stop.enabled = True  # the official TaskPerformer rule after stage 1
    c.early_stop.maxval = 0.01  # initial running mean of stage-1 rewards
    c.early_stop.delta = 0.9  # initial tolerance

    c.failures = ml_collections.ConfigDict()
    c.failures.max_consecutive = 10  # stop (exit 2) after this many candidates in a row fail with one reason
    #                                  (0 = never); a runtime key: it may change when resuming

    c.log = ml_collections.ConfigDict()
    c.log.progress = True  # the live tqdm line
    c.log.plot_every = 10  # refresh the leaderboard figures every n candidates (0 = only at the end)
    c.log.top_k = 10  # rows of the leaderboard table, genotypes drawn
    return c

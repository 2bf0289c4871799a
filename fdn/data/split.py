"""The search's data split (paper.md 3.1) and the stage-1 subset (paper.md 3.2), defined in one place.

The search trains candidates on meta-train and rewards them on meta-val, a seeded 90/10 split of the
training split (``train_aug`` on VOC: 9,523 / 1,059). Stage 1 trains decoders on the first N augmented
crops of meta-train only, whose encoder outputs the search computes once and caches; the crops come from
``pipeline.augmented``, i.e. exactly the start of the training stream for the same seed.
"""

import grain
import numpy as np

from fdn.data import pipeline


def meta_split(num_records, seed, val_fraction=0.1):
    """Seeded split of ``range(num_records)`` into (meta-train, meta-val) index arrays, each sorted.

    meta-train has ``floor(num_records * (1 - val_fraction))`` records (as the reference's split: 9,523 of
    10,582), meta-val the rest.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(num_records)
    num_train = int(num_records * (1 - val_fraction))
    return np.sort(perm[:num_train]), np.sort(perm[num_train:])


def stage1_batches(
    source,
    indices,
    num_examples,
    *,
    crop_size,
    seed,
    min_side=None,
    scale_range=(0.7, 1.4),
    task="segmentation",
    batch_size=64,
    read_threads=2,
):
    """Yield the first ``num_examples`` augmented crops of ``indices`` in batches (the last may be short).

    More than ``len(indices)`` examples wrap around into the next (reshuffled, re-augmented) epoch.
    For caching encoder outputs chunk by chunk without holding all images at once.
    """
    ds = pipeline.augmented(
        source, crop_size=crop_size, seed=seed, indices=indices, min_side=min_side, scale_range=scale_range, task=task
    )[:num_examples]
    ds = ds.batch(batch_size).to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2))
    yield from ds


def stage1_subset(
    source,
    indices,
    num_examples,
    *,
    crop_size,
    seed,
    min_side=None,
    scale_range=(0.7, 1.4),
    task="segmentation",
    batch_size=64,
    read_threads=2,
):
    """The first ``num_examples`` augmented crops of meta-train as NumPy arrays.

    Returns ``{'image': float32 (N, H, W, 3) normalised, 'segmentation': uint8 (N, H, W), 'depth':
    float32 (N, H, W)}`` (label keys as ``task`` asks); deterministic for a seed. Memory: N * H * W * 12
    bytes for the images (4,000 crops of 256x256 = 3.1 GB); use ``stage1_batches`` to stream instead.
    """
    chunks = list(
        stage1_batches(
            source,
            indices,
            num_examples,
            crop_size=crop_size,
            seed=seed,
            min_side=min_side,
            scale_range=scale_range,
            task=task,
            batch_size=batch_size,
            read_threads=read_threads,
        )
    )
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

"""Stage-2 training batches made on the accelerator: meta-train decoded once, each batch a function of (key, step).

Why: the host pipeline (``fdn.data.pipeline.train_dataset``: grain + PIL) decodes and augments every crop on
the CPU, which cannot feed an accelerator at 500-1,000 crops/s. ``DeviceStage2Source.build`` decodes every
record once into one zero-padded uint8 array (N, H_max, W_max, 3) plus the label maps and the true sizes,
on the device; ``batch(key, step)`` then draws the record order and the augmentation
(``fdn.data.device_augment``) from the key alone, so any step can be made in any order, again, after a
restart, with the same bits.

Images are padded to the largest height and the largest width (not bucketed): for VOC (500 x 375 both ways)
that stores 500 x 500, a third more than needed (10,582 train_aug images: 7.9 GB of uint8 images + 2.6 GB of
masks), in exchange for one compiled program. Padding never reaches a crop (the resize reads only inside the
true size).

The stream matches ``train_dataset``'s: meta-train in a random order per epoch, epochs back to back (a batch
may straddle two), ``batch_size`` crops per step; batches have the host's keys, dtypes and normalisation
(``image`` float32 normalised, ``segmentation`` uint8 with 255 = ignore, ``depth`` float32 with 0 = invalid).
Its numbers are not the host's (JAX's generator, not NumPy's): the host path stays the reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fdn import tasks
from fdn.data import augment, device_augment


def _pad(arrays, shape, dtype):
    out = np.zeros((len(arrays), *shape), dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return out


def record_order(key, step, batch_size, num_records):
    """Record indices of ``step``: position ``step * B + i`` of the endless stream of per-epoch permutations."""
    first = step * batch_size
    epoch0 = first // num_records
    spanned = (batch_size - 1) // num_records + 2  # epochs one batch can touch (static)
    orders = jnp.stack(
        [jax.random.permutation(jax.random.fold_in(key, epoch0 + e), num_records) for e in range(spanned)]
    )
    positions = first + jnp.arange(batch_size, dtype=jnp.int32)
    return orders[positions // num_records - epoch0, positions % num_records]


@functools.partial(jax.jit, static_argnames=("batch_size", "crop_size", "min_side", "scale_range", "taps"))
def _batch(data, key, step, *, batch_size, crop_size, min_side, scale_range, taps):
    order_key, augment_key = jax.random.split(key)
    index = record_order(order_key, step, batch_size, data["sizes"].shape[0])
    keys = jax.random.split(jax.random.fold_in(augment_key, step), batch_size)
    labels = {k: v[index] for k, v in data["labels"].items()}
    one = functools.partial(
        device_augment.augment, crop_size=crop_size, min_side=min_side, scale_range=scale_range, taps=taps
    )
    sizes = data["sizes"][index]
    return jax.vmap(one)(keys, data["images"][index], labels, sizes[:, 0], sizes[:, 1])


class DeviceStage2Source:
    """Decoded meta-train on one device and the jitted batch maker (see the module docstring)."""

    def __init__(self, data, *, crop_size, min_side, scale_range, taps):
        self.data = data
        self.crop_size, self.min_side, self.scale_range, self.taps = crop_size, min_side, scale_range, taps

    @classmethod
    def build(cls, records, crop_size, min_side=None, scale_range=(0.7, 1.4), task=tasks.SEGMENTATION, device=None):
        """Decode ``records`` (a random-access source, e.g. ``pipeline.Subset(source, meta_train)``) once.

        ``crop_size``, ``min_side``, ``scale_range`` and ``task`` mean what they mean for
        ``pipeline.train_dataset``; ``device`` defaults to JAX's first device.
        """
        if len(records) == 0:
            raise ValueError("no records to train on")
        spec = augment.TrainTransform(crop_size, min_side=min_side, scale_range=scale_range, task=task)
        keys = spec.keys
        examples = [augment.select(records[i], keys) for i in range(len(records))]
        sizes = np.array([e["image"].shape[:2] for e in examples], np.int32)
        shape = tuple(int(v) for v in sizes.max(axis=0))
        data = {
            "images": _pad([e["image"] for e in examples], (*shape, 3), np.uint8),
            "labels": {k: _pad([e[k] for e in examples], shape, examples[0][k].dtype) for k in keys},
            "sizes": sizes,
        }
        scale_range = tuple(float(v) for v in spec.scale_range)
        taps = device_augment.num_taps(sizes, scale_range)
        data = jax.device_put(data, device or jax.devices()[0])
        return cls(data, crop_size=spec.crop_size, min_side=spec.min_side, scale_range=scale_range, taps=taps)

    def __len__(self):
        return int(self.data["sizes"].shape[0])

    def batch(self, key, step, batch_size):
        """The batch of ``step`` (int) of the stream keyed by ``key`` (a ``jax.random.key``): a dict of arrays."""
        return _batch(
            self.data,
            key,
            jnp.int32(step),
            batch_size=int(batch_size),
            crop_size=self.crop_size,
            min_side=self.min_side,
            scale_range=self.scale_range,
            taps=self.taps,
        )

    def batches(self, key, batch_size, num_steps=None, start=0):
        """Iterator over the batches of steps ``start, start + 1, ...`` (``num_steps`` of them, or endless)."""
        step = start
        while num_steps is None or step < start + num_steps:
            yield self.batch(key, step, batch_size)
            step += 1

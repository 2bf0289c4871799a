"""``python -m fdn.bench data``: images/s of the training input pipeline for several worker counts.

Measures ``fdn.data.pipeline.train_dataset`` end to end (read, decode, scale/mirror/crop, normalise,
batch) after a warm-up batch (worker start-up excluded). ``--source=synthetic`` replaces the dataset by
in-memory VOC-sized JPEGs (500x375 + palette masks, decoded per access like tfds does), so the VOC cost
can be estimated without VOC; ``--source=tfds`` reads a prepared dataset (``fdn_shapes`` is prepared on
the fly if missing).

Examples::

    python -m fdn.bench data                                     # fdn_shapes, crop 112, workers 0,1,2
    python -m fdn.bench data --source=synthetic --crop=350 --min_side=400 --batch_size=32
    python -m fdn.bench data --dataset=voc_sbd --split=train_aug --data_dir=/data/tfds --crop=350 --min_side=400
    python -m fdn.bench data --path=device --source=synthetic --crop=350 --min_side=400   # + the device path

``--path=device`` adds the on-device stage-2 path (``fdn.data.device_source``) on the same records: the
one-off decode of ``--device_records`` records onto JAX's default device, the first batch (compile), then
crops/s with every batch waited for, next to the host rows of the same run.
"""

import io
import time

import numpy as np
from absl import flags
from PIL import Image

from fdn import tasks
from fdn.data import augment

FLAGS = flags.FlagValues()
flags.DEFINE_enum(
    "source",
    "tfds",
    ["tfds", "synthetic"],
    "read a prepared tfds dataset or synthetic VOC-size JPEGs",
    flag_values=FLAGS,
)
flags.DEFINE_string("dataset", "fdn_shapes", "tfds dataset name", flag_values=FLAGS)
flags.DEFINE_string("split", "train", "split", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "tfds data dir", flag_values=FLAGS)
flags.DEFINE_integer("crop", 112, "crop size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("min_side", None, "minimum shorter side R (default: crop)", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 32, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("task", tasks.SEGMENTATION, list(augment.TASKS), "label keys", flag_values=FLAGS)
flags.DEFINE_list("workers", ["0", "1", "2"], "worker process counts to measure", flag_values=FLAGS)
flags.DEFINE_integer("read_threads", 2, "reader threads per process", flag_values=FLAGS)
flags.DEFINE_float("seconds", 10.0, "measuring time per worker count", flag_values=FLAGS)
flags.DEFINE_enum(
    "path",
    "host",
    ["host", "device"],
    "host: the grain pipeline only; device: also the on-device augmentation (fdn.data.device_source)",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "device_records", 256, "records decoded onto the device for --path=device", lower_bound=1, flag_values=FLAGS
)


class SyntheticJpegSource:
    """``num`` VOC-sized records kept as encoded JPEG/PNG bytes and decoded on every access."""

    def __init__(self, num=64, size=(375, 500), seed=0):
        rng = np.random.default_rng(seed)
        self.records = []
        for _ in range(num):
            # Smooth random colour field + noise: compresses like a photo, not like white noise.
            small = rng.integers(0, 256, (size[0] // 25 + 1, size[1] // 25 + 1, 3)).astype(np.uint8)
            image = np.asarray(Image.fromarray(small).resize(size[::-1], Image.BICUBIC))
            image = np.clip(image + rng.integers(-10, 11, image.shape), 0, 255).astype(np.uint8)
            mask = np.kron(rng.integers(0, 21, (size[0] // 25 + 1, size[1] // 25 + 1)), np.ones((25, 25), np.uint8))
            self.records.append((_encode(image, "JPEG"), _encode(mask[: size[0], : size[1]].astype(np.uint8), "PNG")))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        jpeg, png = self.records[i]
        return {
            "image": np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")),
            tasks.SEGMENTATION: np.asarray(Image.open(io.BytesIO(png))),
            "image_id": str(i),
        }


def _encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, quality=90) if fmt == "JPEG" else Image.fromarray(array).save(
        buffer, format=fmt
    )
    return buffer.getvalue()


def _source():
    if FLAGS.source == "synthetic":
        return SyntheticJpegSource(), "synthetic 500x375 JPEG"
    from fdn.data import pipeline

    try:
        source = pipeline.data_source(FLAGS.dataset, FLAGS.split, FLAGS.data_dir)
    except FileNotFoundError:
        if FLAGS.dataset != "fdn_shapes":
            raise
        from fdn.data import prepare

        prepare.prepare("fdn_shapes", data_dir=FLAGS.data_dir)
        source = pipeline.data_source(FLAGS.dataset, FLAGS.split, FLAGS.data_dir)
    return source, f"{FLAGS.dataset}/{FLAGS.split}"


def measure(source, workers):
    """(images/s, batches) of the training pipeline with ``workers`` processes."""
    from fdn.data import pipeline

    ds = pipeline.train_dataset(
        source,
        crop_size=FLAGS.crop,
        min_side=FLAGS.min_side,
        batch_size=FLAGS.batch_size,
        seed=0,
        task=FLAGS.task,
        process_index=0,
        process_count=1,
        worker_count=workers,
        read_threads=FLAGS.read_threads,
    )
    it = iter(ds)
    try:
        next(it)  # warm-up: worker start-up, first reads
        batches, start = 0, time.perf_counter()
        while time.perf_counter() - start < FLAGS.seconds:
            next(it)
            batches += 1
        elapsed = time.perf_counter() - start
    finally:
        if hasattr(it, "close"):
            it.close()
    return batches * FLAGS.batch_size / elapsed, batches


def measure_device(source):
    """(crops/s, batches, decode seconds, first-batch seconds, device) of ``DeviceStage2Source`` on ``source``."""
    import jax

    from fdn.data import pipeline
    from fdn.data.device_source import DeviceStage2Source

    records = pipeline.Subset(source, range(min(len(source), FLAGS.device_records)))
    start = time.perf_counter()
    device = DeviceStage2Source.build(records, FLAGS.crop, FLAGS.min_side, task=FLAGS.task)
    jax.block_until_ready(device.data)
    decode_s, start = time.perf_counter() - start, time.perf_counter()
    key = jax.random.key(0)
    jax.block_until_ready(device.batch(key, 0, FLAGS.batch_size))  # compile + first batch
    first_s = time.perf_counter() - start
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < FLAGS.seconds:
        batches += 1
        jax.block_until_ready(device.batch(key, batches, FLAGS.batch_size))
    elapsed = time.perf_counter() - start
    return batches * FLAGS.batch_size / elapsed, batches, decode_s, first_s, jax.devices()[0].device_kind


def main(argv):
    FLAGS(argv)
    source, name = _source()
    print(
        f"training pipeline on {name}: crop {FLAGS.crop}, min side {FLAGS.min_side or FLAGS.crop}, "
        f"batch {FLAGS.batch_size}, task {FLAGS.task}, {FLAGS.read_threads} reader threads per process"
    )
    print(f"{'workers':>8} {'images/s':>10} {'batches':>8}")  # images/s = crops/s
    for workers in (int(w) for w in FLAGS.workers):
        rate, batches = measure(source, workers)
        print(f"{workers:>8} {rate:>10.1f} {batches:>8}", flush=True)
    if FLAGS.path == "device":
        rate, batches, decode_s, first_s, kind = measure_device(source)
        decoded = min(len(source), FLAGS.device_records)
        print(
            f"{'device':>8} {rate:>10.1f} {batches:>8}   ({kind}; decode of {decoded} records {decode_s:.1f} s, "
            f"first batch with compile {first_s:.1f} s)",
            flush=True,
        )
    return 0

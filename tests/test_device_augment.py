"""The on-device stage-2 augmentation (fdn.data.device_augment / device_source) against the host pipeline.

The device path draws from JAX keys, the host from NumPy: the crops cannot be equal, so the tests compare
(1) the geometry for *given* draws against the host's own resize / mirror / crop (Pillow), pixel by pixel, and
(2) the distributions of many draws against the host's ``TrainTransform``, with tolerances from the sampling
error (two-sample Kolmogorov-Smirnov at 1 %, binomial and mean tests at 4 standard errors: a correct
implementation fails one of them far less than once in a thousand runs; every seed here is fixed anyway).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from fdn.data import augment, shapes
from fdn.data import device_augment as D
from fdn.data.device_source import DeviceStage2Source, record_order
from tests.data import trees

VOC = trees.SAMPLES / "voc"
SCALES = (0.7, 1.4)
# The probe: a 40 x 60 image inside a 96 crop (the largest scaled image, 56 x 84, always fits), so every crop
# shows the whole scaled image: its label area gives the scale, its left/right classes the mirror bit.
PROBE_HW, PROBE_CROP, PROBE_MIN_SIDE = (40, 60), 96, 30
DRAWS = 384


def _ks_limit(n, m, coefficient=1.63):
    """Two-sample KS statistic above which the samples differ at the 1 % level."""
    return coefficient * np.sqrt((n + m) / (n * m))


def _ks(a, b):
    grid = np.union1d(a, b)
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return np.abs(cdf(a) - cdf(b)).max()


def _probe_record(index):
    """Left half class 1, right half class 2 (the mirror shows), a grey-level ramp, depth = 1 + class."""
    h, w = PROBE_HW
    seg = np.where(np.arange(w)[None, :] < w // 2, 1, 2).repeat(h, 0).astype(np.uint8)
    image = np.stack([np.tile(np.linspace(30, 220, w), (h, 1))] * 3, -1).astype(np.uint8)
    image[..., 1] = (image[..., 1].astype(int) + 7 * index) % 256
    return {"image": image, "segmentation": seg, "depth": seg.astype(np.float32) + 1.0}


def _probe_stats(crops):
    """(scaled area, mirrored, top, left) of each crop from its labels."""
    out = []
    for seg in crops:
        rows, cols = np.nonzero(seg != 255)
        ones = cols[seg[rows, cols] == 1]
        twos = cols[seg[rows, cols] == 2]
        out.append((len(rows), ones.mean() > twos.mean(), rows.min(), cols.min()))
    return np.array(out, np.int64).T


@pytest.fixture(scope="module")
def probe():
    """(device source, device crops, host crops) of ``DRAWS`` draws each on the probe records."""
    records = [_probe_record(i) for i in range(4)]
    source = DeviceStage2Source.build(records, PROBE_CROP, PROBE_MIN_SIDE, SCALES, task=augment.BOTH)
    key = jax.random.key(0)
    batches = [jax.device_get(source.batch(key, step, 64)) for step in range(DRAWS // 64)]
    device = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    transform = augment.TrainTransform(PROBE_CROP, PROBE_MIN_SIDE, SCALES, task=augment.BOTH)
    rng = np.random.default_rng(0)
    host_list = [transform(records[i % 4], rng) for i in range(DRAWS)]
    host = {k: np.stack([h[k] for h in host_list]) for k in host_list[0]}
    return source, device, host


def test_batches_have_the_host_keys_dtypes_and_shapes(probe):
    _, device, host = probe
    assert sorted(device) == sorted(host)
    for k in host:
        assert device[k].dtype == host[k].dtype and device[k].shape == host[k].shape, k


def test_the_same_key_and_step_give_the_same_bits_in_any_order(probe):
    source, device, _ = probe
    key = jax.random.key(0)
    later_first = [jax.device_get(source.batch(key, step, 64)) for step in (5, 2, 0)]
    for step, batch in zip((5, 2, 0), later_first):
        for k in batch:
            np.testing.assert_array_equal(batch[k], device[k][step * 64 : (step + 1) * 64], err_msg=k)
    other = jax.device_get(source.batch(jax.random.key(1), 0, 64))
    assert not np.array_equal(other["segmentation"], device["segmentation"][:64])


def test_an_example_is_the_same_bits_alone_as_in_its_batch(probe):
    """The per-example function jitted alone (not vmapped) reproduces the batch: no batch-dependent fusion."""
    source, device, _ = probe
    key, step, size = jax.random.key(0), 1, 64
    order_key, augment_key = jax.random.split(key)
    keys = jax.random.split(jax.random.fold_in(augment_key, step), size)
    index = np.asarray(record_order(order_key, step, size, len(source)))
    one = jax.jit(
        lambda k, im, lab, h, w: D.augment(
            k, im, lab, h, w, crop_size=source.crop_size, min_side=source.min_side, scale_range=SCALES, taps=source.taps
        )
    )
    data = source.data
    for i in (0, 37):
        r = int(index[i])
        labels = {k: v[r] for k, v in data["labels"].items()}
        alone = jax.device_get(one(keys[i], data["images"][r], labels, data["sizes"][r, 0], data["sizes"][r, 1]))
        for k in alone:
            np.testing.assert_array_equal(alone[k], device[k][step * size + i], err_msg=k)


def test_every_record_once_per_epoch_and_epochs_reshuffled():
    key = jax.random.key(3)
    order = np.concatenate([np.asarray(record_order(key, s, 3, 5)) for s in range(5)])  # 15 = three epochs
    for epoch in range(3):
        assert sorted(order[epoch * 5 : (epoch + 1) * 5]) == list(range(5))
    assert len({tuple(order[e * 5 : (e + 1) * 5]) for e in range(3)}) > 1  # reshuffled


def test_scale_distribution_matches_the_host(probe):
    _, device, host = probe
    area_d, _, _, _ = _probe_stats(device["segmentation"])
    area_h, _, _, _ = _probe_stats(host["segmentation"])
    assert _ks(area_d, area_h) < _ks_limit(len(area_d), len(area_h))
    # s < 30 / 40 = 0.75 is raised to 0.75 (area 30 x 45): probability 0.05 / 0.7 on both paths.
    p = 0.05 / 0.7
    for area in (area_d, area_h):
        rate = np.mean(area == 30 * 45)
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / len(area)), rate
    assert area_d.min() >= 30 * 45 and area_d.max() <= 56 * 84


def test_mirror_rate_and_centred_padding(probe):
    _, device, host = probe
    for crops in (device, host):
        area, mirrored, top, left = _probe_stats(crops["segmentation"])
        assert abs(mirrored.mean() - 0.5) < 4 * np.sqrt(0.25 / len(mirrored))
        # The padding is centred: top = (crop - scaled height) // 2 for the height the area implies.
        heights = np.array([(crops["segmentation"][i] != 255).any(1).sum() for i in range(len(area))])
        widths = area // heights
        np.testing.assert_array_equal(top, (PROBE_CROP - heights) // 2)
        np.testing.assert_array_equal(left, (PROBE_CROP - widths) // 2)
        pad = crops["segmentation"] == 255
        assert np.all(crops["image"][pad] == 0.0) and np.all(crops["depth"][pad] == 0.0)
        assert set(np.unique(crops["segmentation"])) == {1, 2, 255}


def test_crop_starts_are_uniform():
    h, w, crop = 50, 70, 32
    keys = jax.random.split(jax.random.key(7), 2000)
    draw = jax.jit(jax.vmap(lambda k: D.sample(k, jnp.int32(h), jnp.int32(w), (crop, crop), crop, SCALES)))
    params = jax.device_get(draw(keys))
    assert np.all(params.height >= crop) and np.all(params.top >= 0) and np.all(params.top <= params.height - crop)
    for start, length in ((params.top, params.height), (params.left, params.width)):
        u = (start + np.random.default_rng(0).uniform(size=len(start))) / (length - crop + 1)  # continuous U(0, 1)
        assert _ks(u, np.random.default_rng(1).uniform(size=4000)) < _ks_limit(len(u), 4000)
    assert abs(params.mirror.mean() - 0.5) < 4 * np.sqrt(0.25 / 2000)


@pytest.fixture(scope="module")
def crop_fn():
    """``device_augment.crop`` jitted for a 500 x 500 padded canvas and a 120 x 120 crop (one compile)."""
    taps = D.num_taps([(100, 100)], (0.5, 1.0))

    @jax.jit
    def fn(image, seg, h, w, params):
        return D.crop(image, {"segmentation": seg}, h, w, params, (120, 120), taps)

    def run(image, seg, params):
        h, w = seg.shape
        canvas = np.zeros((500, 500, 3), np.uint8)
        canvas[:h, :w] = image
        labels = np.full((500, 500), 7, np.uint8)  # a value the crop must never show
        labels[:h, :w] = seg
        params = D.CropParams(*(jnp.asarray(v) for v in params))
        return jax.device_get(fn(canvas, labels, jnp.int32(h), jnp.int32(w), params))

    return run


def _host_crop(image, seg, height, width, mirror, top, left, size=(120, 120)):
    example = {"image": image, "segmentation": seg}
    h, w = seg.shape
    if (height, width) != (h, w):
        example = {
            "image": np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC)),
            "segmentation": np.asarray(Image.fromarray(seg).resize((width, height), Image.NEAREST)),
        }
    if mirror:
        example = augment.mirror(example)
    return augment.crop(example, size, top, left)


@pytest.mark.parametrize("factor", [2, 3, 0.5])
def test_nearest_labels_equal_pillow_on_integer_scales(crop_fn, factor):
    rng = np.random.default_rng(5)
    seg = rng.choice(np.array([0, 3, 9, 255], np.uint8), (36, 40))
    image = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
    height, width = int(36 * factor), int(40 * factor)
    for mirror, top, left in ((False, 0, 0), (True, -3, 5), (False, height - 120, -7)):
        host = _host_crop(image, seg, height, width, mirror, top, left)
        device = crop_fn(image, seg, (height, width, mirror, top, left))
        np.testing.assert_array_equal(device["segmentation"], host["segmentation"])
        levels = np.abs(augment.denormalise(device["image"]).astype(int) - augment.denormalise(host["image"]))
        assert levels.max() <= 1


@pytest.mark.skipif(not VOC.is_dir(), reason=f"no VOC samples in {VOC}")
def test_voc_crops_match_pillow_within_two_levels(crop_fn):
    """On the real samples, for the host's own draws: image within 2 grey levels of Pillow on < 1 % of the
    pixels (float32 weights vs Pillow's double / fixed point), labels equal but for Pillow's rounding at exact
    ties (< 1 % of the pixels)."""
    rng = np.random.default_rng(0)
    worst_levels, differing, label_misses, pixels = 0, 0, 0, 0
    for path in sorted(VOC.glob("*.jpg"))[:3]:
        image = np.asarray(Image.open(path).convert("RGB"))
        seg = np.asarray(Image.open(path.with_suffix(".png")))
        h, w = seg.shape
        for s in (0.7, 0.83, 1.0, 1.17, 1.4):
            height, width = round(h * s), round(w * s)
            mirror = bool(rng.integers(2))
            top, left = int(rng.integers(0, height - 119)), int(rng.integers(0, width - 119))
            host = _host_crop(image, seg, height, width, mirror, top, left)
            device = crop_fn(image, seg, (height, width, mirror, top, left))
            levels = np.abs(augment.denormalise(device["image"]).astype(int) - augment.denormalise(host["image"]))
            worst_levels = max(worst_levels, int(levels.max()))
            differing += int((levels > 0).sum())
            label_misses += int((device["segmentation"] != host["segmentation"]).sum())
            pixels += levels.size // 3
    assert worst_levels <= 2 and differing < 0.01 * pixels * 3 and label_misses < 0.01 * pixels


@pytest.mark.skipif(not VOC.is_dir(), reason=f"no VOC samples in {VOC}")
def test_voc_pixel_statistics_match_the_host():
    """Per-channel mean and std of the normalised crops, device vs host, within 4 standard errors (from the
    spread of the per-crop values); the label set is the source's plus 255."""
    records = []
    for path in sorted(VOC.glob("*.jpg")):
        records.append(
            {
                "image": np.asarray(Image.open(path).convert("RGB")),
                "segmentation": np.asarray(Image.open(path.with_suffix(".png"))),
            }
        )
    crop, min_side, n = 96, 96, 192
    source = DeviceStage2Source.build(records, crop, min_side, SCALES)
    device = [jax.device_get(source.batch(jax.random.key(2), step, 64)) for step in range(n // 64)]
    d_img = np.concatenate([b["image"] for b in device])
    d_seg = np.concatenate([b["segmentation"] for b in device])
    transform = augment.TrainTransform(crop, min_side, SCALES)
    rng = np.random.default_rng(2)
    host = [transform(records[i % len(records)], rng) for i in range(n)]
    h_img = np.stack([h["image"] for h in host])
    for stat in (np.mean, np.std):
        a, b = stat(d_img, axis=(1, 2)), stat(h_img, axis=(1, 2))  # (n, 3) per-crop values
        error = np.sqrt(a.var(0) / n + b.var(0) / n)
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * error), (stat.__name__, a.mean(0), b.mean(0), error)
    source_labels = set().union(*(np.unique(r["segmentation"]).tolist() for r in records))
    assert set(np.unique(d_seg).tolist()) <= source_labels | {255}


def test_fdn_shapes_pixel_statistics_match_the_host():
    """The same comparison on one fdn_shapes image (128 x 160, crop 112): with one image the spread is the
    augmentation's alone, so the test sees small shifts (a 4 % error in the /255 fails it)."""
    records = [shapes.render("train", 3)]
    crop, n = 112, 128
    source = DeviceStage2Source.build(records, crop, crop, SCALES, task=augment.BOTH)
    device = [jax.device_get(source.batch(jax.random.key(4), step, 64)) for step in range(n // 64)]
    transform = augment.TrainTransform(crop, crop, SCALES, task=augment.BOTH)
    rng = np.random.default_rng(4)
    host = [transform(records[i % len(records)], rng) for i in range(n)]
    for key in ("image", "depth"):
        d = np.concatenate([b[key] for b in device]).reshape(n, crop * crop, -1)
        h = np.stack([x[key] for x in host]).reshape(n, crop * crop, -1)
        for stat in (np.mean, np.std):
            a, b = stat(d, axis=1), stat(h, axis=1)
            error = np.sqrt(a.var(0) / n + b.var(0) / n)
            assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * error), (key, stat.__name__, a.mean(0), b.mean(0))
    labels = np.concatenate([b["segmentation"] for b in device])
    assert set(np.unique(labels).tolist()) <= set(range(7))  # fdn_shapes has no 255 and min_side = crop


def test_bench_data_measures_the_device_path():
    from fdn.bench import data as bench_data

    bench_data.FLAGS(["bench", "--path=device", "--crop=24", "--batch_size=4", "--seconds=0.2", "--device_records=3"])
    rate, batches, decode_s, first_s, kind = bench_data.measure_device(bench_data.SyntheticJpegSource(5, (30, 40)))
    assert rate > 0 and batches >= 1 and decode_s >= 0 and first_s > 0 and kind

"""``fdn_shapes``: the embedded, procedurally generated demo dataset (no download, prepares in seconds).

Why it looks the way it does: a decoder search is only meaningful if the decoder choices (receptive
field, output resolution, which encoder levels are fused) change the result. Each 128x160 image holds
3-7 overlapping large objects plus 1-4 small markers, and the class of a pixel depends on cues at
different scales:

====  ======================  =======================================================================
 id   class                   what tells it apart
====  ======================  =======================================================================
 0    background              smooth colour gradient, no texture
 1    striped_disc            disc + stripes: vs 2 by fine texture, vs 3/4 by global shape
 2    checkered_disc          disc + checkerboard
 3    striped_square          (rotated) square + stripes: same texture as 1, other shape
 4    triangle                triangle with stripes *or* checkerboard: only the shape decides
 5    marker_on_stripes       small solid square lying on a striped object (class 1 or 3)
 6    marker_elsewhere        the same small square lying on anything else: only the context decides
====  ======================  =======================================================================

Colours are random per object, so colour carries no class information; object size shrinks with depth
(a monocular cue). Keypoints (the pose demo, version 1.1.0; the images are unchanged): five landmarks of the
*nearest* large object (the largest one, drawn on top): its centre and its top-, bottom-, left- and
right-most outline points (a vertex, the midpoint of an edge that is extreme, or the disc's rim), with
``v = 1`` inside the image; ``keypoint_norm`` is the object's radius in pixels (so PCK@0.5 means within half
the radius) and ``keypoint_flip`` says which landmark each becomes in a mirror image (left <-> right).
Labels are exact (no ignore band). The depth map (float32 metres) is a sloped
background plane with every object on its own fronto-parallel plane, markers 5 cm in front of what they
sit on, and 0-3 small holes of 0 (= invalid).

Determinism across machines: every image comes from ``np.random.default_rng([SEED, split, index])``
(PCG64 + SeedSequence, platform independent) and is rasterised with integer arithmetic only (no
anti-aliasing, no trigonometry at render time), so the same numpy version gives identical bytes anywhere
and the images do not depend on the order or the process that generates them.
"""

import concurrent.futures
import functools
import io
import math
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from fdn.data import base, features

SEED = 20190616
HEIGHT, WIDTH = 128, 160
SPLITS = {"train": 1200, "val": 200}
CLASS_NAMES = (
    "background",
    "striped_disc",
    "checkered_disc",
    "striped_square",
    "triangle",
    "marker_on_stripes",
    "marker_elsewhere",
)
NUM_CLASSES = len(CLASS_NAMES)
STRIPED_HOSTS = (1, 3)
# The pose demo's joint table (until fdn/pose/joints.py holds every dataset's).
KEYPOINT_NAMES = ("centre", "top", "bottom", "left", "right")
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
KEYPOINT_FLIP_PAIRS = ((3, 4),)
KEYPOINT_SKELETON = ((0, 1), (0, 2), (0, 3), (0, 4))
KEYPOINT_FLIP = (0, 1, 2, 4, 3)  # the joint each becomes in a mirror image (KEYPOINT_FLIP_PAIRS swapped)

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Integer directions for stripes and square orientations: exact on every platform.
_DIRECTIONS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 1), (1, 2), (2, -1), (1, -2))
# Unit vectors x1000 for triangle vertices, rounded once (ties at .5 cannot occur for these angles).
_UNIT = tuple(
    (round(1000 * math.cos(2 * math.pi * k / 36)), round(1000 * math.sin(2 * math.pi * k / 36))) for k in range(36)
)


def _contrasting_colours(rng):
    """Two random colours far enough apart for the texture to be visible."""
    while True:
        c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if np.abs(c1 - c2).sum() >= 150:
            return c1, c2


def _texture(rng, kind, ys, xs):
    """0/1 pattern of stripes (any of 8 integer directions) or a checkerboard."""
    if kind == "stripes":
        a, b = _DIRECTIONS[rng.integers(len(_DIRECTIONS))]
        period = int(rng.integers(4, 8))
        return ((a * xs + b * ys) // period) % 2
    period = int(rng.integers(3, 6))
    if rng.integers(2):
        return ((xs // period) + (ys // period)) % 2
    return (((xs + ys) // period) + ((xs - ys) // period)) % 2


def _shape_mask(rng, kind, cy, cx, r, ys, xs):
    """``(mask, outline)``: the boolean mask of a disc, rotated square or triangle of 'radius' ``r`` centred at
    (cy, cx), and its extreme points (x, y) top, bottom, left, right (`_extremes`)."""
    dy, dx = ys - cy, xs - cx
    if kind == "disc":
        return dy * dy + dx * dx <= r * r, ((cx, cy - r), (cx, cy + r), (cx - r, cy), (cx + r, cy))
    if kind == "square":
        a, b = _DIRECTIONS[rng.integers(len(_DIRECTIONS))]
        half = (r * 7) // 8  # about the disc's area
        u, v = a * dx + b * dy, -b * dx + a * dy
        bound = half * half * (a * a + b * b)
        n = math.hypot(a, b)
        corners = [
            (cx + half * (su * a - sv * b) / n, cy + half * (su * b + sv * a) / n) for su in (-1, 1) for sv in (-1, 1)
        ]
        # A rotated square's corners reach half * sqrt(2) > r: what is drawn is the square cut by the box.
        return (u * u <= bound) & (v * v <= bound), _extremes(_clip(corners, cx - r, cy - r, cx + r, cy + r))
    k0 = int(rng.integers(36))
    verts = [
        (cx + (r * _UNIT[(k0 + 12 * j) % 36][0]) // 1000, cy + (r * _UNIT[(k0 + 12 * j) % 36][1]) // 1000)
        for j in range(3)
    ]
    signs = []
    for (x0, y0), (x1, y1) in zip(verts, verts[1:] + verts[:1]):
        signs.append((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0))
    mask = ((signs[0] >= 0) & (signs[1] >= 0) & (signs[2] >= 0)) | ((signs[0] <= 0) & (signs[1] <= 0) & (signs[2] <= 0))
    return mask, _extremes(verts)


def _clip(polygon, x0, y0, x1, y1):
    """The convex ``polygon`` (x, y) vertices cut to the box [x0, x1] x [y0, y1] (Sutherland-Hodgman)."""
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        inside = [(p[axis] <= bound) if keep_below else (p[axis] >= bound) for p in polygon]
        out = []
        for i, p in enumerate(polygon):
            q, q_in = polygon[i - 1], inside[i - 1]
            if inside[i] != q_in:
                t = (bound - q[axis]) / (p[axis] - q[axis])
                out.append((q[0] + t * (p[0] - q[0]), q[1] + t * (p[1] - q[1])))
            if inside[i]:
                out.append(p)
        polygon = out
    return polygon


def _extremes(vertices):
    """Top-, bottom-, left- and right-most points of a convex polygon: the extreme vertex, or the mean of the
    vertices within half a pixel of the extreme (an edge that is extreme: its midpoint)."""
    pts = np.asarray(vertices, np.float64)
    out = []
    for axis, sign in ((1, -1), (1, 1), (0, -1), (0, 1)):
        value = sign * pts[:, axis]
        out.append(tuple(pts[value >= value.max() - 0.5].mean(axis=0)))
    return tuple(out)


def _keypoints(cy, cx, r, outline):
    """(K, 3) float32 (x, y, v) of `KEYPOINT_NAMES`; v = 1 inside the image."""
    points = np.array([(cx, cy), *outline], np.float32)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= WIDTH - 1) & (points[:, 1] >= 0) & (points[:, 1] <= HEIGHT - 1)
    return np.concatenate([points, inside[:, None].astype(np.float32)], axis=1)


def render(split, index):
    """Generate one example: ``image`` (H, W, 3) uint8, ``segmentation`` (H, W) uint8, ``depth`` (H, W) f32,
    ``keypoints`` (K, 3) f32 and ``keypoint_norm`` f32 (the nearest object's landmarks and radius)."""
    rng = np.random.default_rng([SEED, _SPLIT_CODES[split], int(index)])
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.int64)

    # Background: a smooth colour gradient and a sloped depth plane (far at the top, near at the bottom).
    c0 = rng.integers(40, 216, 3)
    grad_x, grad_y = rng.integers(-50, 51, 3), rng.integers(-50, 51, 3)
    image = c0 + (grad_x * xs[..., None]) // WIDTH + (grad_y * ys[..., None]) // HEIGHT
    top, bottom, tilt = rng.uniform(6.0, 9.0), rng.uniform(2.0, 3.5), rng.uniform(-0.5, 0.5)
    depth = bottom + (top - bottom) * (HEIGHT - 1 - ys) / (HEIGHT - 1) + tilt * (xs / (WIDTH - 1) - 0.5)
    label = np.zeros((HEIGHT, WIDTH), np.int64)

    # Large objects, painted far to near so that nearer ones occlude.
    num_objects = int(rng.integers(3, 8))
    objects = []
    for _ in range(num_objects):
        cls = int(rng.integers(1, 5))
        d = rng.uniform(1.6, 5.5)
        objects.append((d, cls, int(rng.integers(0, 2**31))))
    objects.sort(key=lambda o: -o[0])
    keypoints = norm = None
    for d, cls, obj_seed in objects:
        orng = np.random.default_rng([SEED, _SPLIT_CODES[split], int(index), obj_seed])
        kind = {1: "disc", 2: "disc", 3: "square", 4: "triangle"}[cls]
        r = int(np.clip(int(90 / d), 14, 48)) * (5 if kind == "triangle" else 4) // 4
        cy, cx = int(orng.integers(-r // 2, HEIGHT + r // 2)), int(orng.integers(-r // 2, WIDTH + r // 2))
        texture = {1: "stripes", 2: "checker", 3: "stripes", 4: ("stripes", "checker")[orng.integers(2)]}[cls]
        # Rasterise inside the bounding box only (the shapes never reach beyond cx/cy +- r).
        box = (slice(max(cy - r, 0), min(cy + r + 1, HEIGHT)), slice(max(cx - r, 0), min(cx + r + 1, WIDTH)))
        mask, outline = _shape_mask(orng, kind, cy, cx, r, ys[box], xs[box])
        keypoints, norm = _keypoints(cy, cx, r, outline), np.float32(r)  # the last painted is the nearest
        pattern = _texture(orng, texture, ys[box], xs[box])
        c1, c2 = _contrasting_colours(orng)
        fill = np.where(pattern[..., None] == 1, c1, c2)
        image[box] = np.where(mask[..., None], fill, image[box])
        label[box][mask] = cls
        depth[box][mask] = d

    # Markers: identical small solid squares whose class depends on what they lie on.
    num_markers = int(rng.integers(1, 5))
    for _ in range(num_markers):
        want_striped = bool(rng.integers(2))
        hosts = np.isin(label, STRIPED_HOSTS) if want_striped else np.isin(label, (0, 2, 4))
        candidates = np.flatnonzero(hosts)
        size = int(rng.integers(6, 11))
        colour = rng.integers(0, 256, 3)
        for _attempt in range(20):
            if candidates.size == 0:
                break
            y0, x0 = divmod(int(candidates[rng.integers(candidates.size)]), WIDTH)
            y0, x0 = y0 - size // 2, x0 - size // 2
            if y0 < 0 or x0 < 0 or y0 + size > HEIGHT or x0 + size > WIDTH:
                continue
            region = label[y0 : y0 + size, x0 : x0 + size]
            host = int(region[0, 0])
            if host > 4 or not (region == host).all():
                continue
            label[y0 : y0 + size, x0 : x0 + size] = 5 if host in STRIPED_HOSTS else 6
            image[y0 : y0 + size, x0 : x0 + size] = colour
            depth[y0 : y0 + size, x0 : x0 + size] = depth[y0 + size // 2, x0 + size // 2] - 0.05
            break

    # Sensor-like noise on the image, invalid (0) holes in the depth map.
    image = np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        hy, hx = int(rng.integers(HEIGHT)), int(rng.integers(WIDTH))
        ry, rx = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        depth[((ys - hy) * rx) ** 2 + ((xs - hx) * ry) ** 2 <= (rx * ry) ** 2] = 0.0
    return {
        "image": image,
        "segmentation": label.astype(np.uint8),
        "depth": depth.astype(np.float32),
        "keypoints": keypoints,
        "keypoint_norm": norm,
    }


def image_id(split, index):
    """Stable id of a generated example, e.g. ``shapes_train_00042``."""
    return f"shapes_{split}_{index:05d}"


def _png(array):
    """Lossless at any level; level 1 encodes several times faster than PIL's default 6 (the demo's cold start)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _record(split, index):
    """One stored example: ``render``'s arrays with the image PNG-encoded."""
    example = render(split, index)
    key = image_id(split, index)
    return key, {
        "image": _png(example["image"]),
        "image_id": key,
        "segmentation": example["segmentation"],
        "depth": example["depth"],
        "keypoints": example["keypoints"],
        "keypoint_norm": example["keypoint_norm"],
        "keypoint_flip": np.asarray(KEYPOINT_FLIP, np.int32),
    }


def _records(split, num_examples, window=64):
    """``_record`` of every index in order, rendered and encoded on every core (NumPy, PNG and zlib release the
    GIL), ``window`` at a time so that memory stays flat."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, num_examples, window):
            stop = min(start + window, num_examples)
            yield from pool.map(functools.partial(_record, split), range(start, stop))


class FdnShapes(base.ArrayRecordBuilder):
    """Builder of ``fdn_shapes`` (splits ``train`` 1200 and ``val`` 200; images 128x160)."""

    name = "fdn_shapes"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release: 7 classes, 128x160, seed 20190616.",
        "1.1.0": "Keypoints of the nearest object (pose demo); images, labels and depth unchanged.",
    }
    DESCRIPTION = __doc__

    def _features(self):
        return tfds.features.FeaturesDict(
            {
                "image": features.image("png"),
                "image_id": features.image_id(),
                "segmentation": features.label_map(),
                "depth": features.depth_map(),
                "keypoints": tfds.features.Tensor(shape=(NUM_KEYPOINTS, 3), dtype=np.float32),
                "keypoint_norm": tfds.features.Scalar(dtype=np.float32),
                "keypoint_flip": tfds.features.Tensor(shape=(NUM_KEYPOINTS,), dtype=np.int32),
            }
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split, n) for split, n in SPLITS.items()}

    def _generate_examples(self, split, num_examples):
        yield from _records(split, num_examples)

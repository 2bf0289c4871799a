"""Image files in, normalised arrays out: ``fdn.conventions.normalise`` (RGB / 255, ImageNet mean and std), the
same preprocessing the training and evaluation crops get."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fdn.conventions import normalise

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


def read_rgb(path) -> np.ndarray:
    """(H, W, 3) uint8; greyscale, palette and RGBA files are converted to RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_inputs(paths) -> tuple[np.ndarray, list[str]]:
    """Normalised (N, H, W, 3) float32 batch and one name per image from image files and/or ``.npy`` batches.

    A ``.npy`` must already be normalised, (N, H, W, 3) float32 (a single (H, W, 3) image is accepted too).
    All inputs must share one size, since they form one batch.
    """
    from fdn.errors import InputError

    arrays, names = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise InputError(f"input {p} does not exist; give image files (.jpg, .png) or .npy arrays that exist")
        if p.suffix.lower() == ".npy":
            try:
                a = np.load(p, allow_pickle=False)
            except ValueError as err:
                raise InputError(f"{p} is not a readable .npy array: {err}") from None
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[-1] != 3:
                raise InputError(f"{p} has shape {a.shape}; expected (N, H, W, 3) normalised float32 (NHWC)")
            if not np.issubdtype(a.dtype, np.floating):
                raise InputError(
                    f"{p} has dtype {a.dtype}; expected normalised float32 (images as .jpg/.png "
                    "files are normalised for you)"
                )
            arrays.append(a.astype(np.float32))
            names += [f"{p.stem}_{i}" for i in range(a.shape[0])] if a.shape[0] > 1 else [p.stem]
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            try:
                arrays.append(normalise(read_rgb(p))[None])
            except OSError as err:
                raise InputError(f"{p} is not a readable image: {err}") from None
            names.append(p.stem)
        else:
            raise InputError(f"{p}: unsupported input type {p.suffix!r}; give .jpg/.png images or .npy arrays")
    if not arrays:
        raise InputError("no inputs given")
    sizes = sorted({a.shape[1:3] for a in arrays})
    if len(sizes) > 1:
        raise InputError(f"inputs have different sizes {sizes}; predict each size in a separate call")
    batch = np.concatenate(arrays)
    if not np.isfinite(batch).all():
        raise InputError("inputs contain NaN or Inf values")
    return batch, names


MIN_SIDE = 32  # the encoder's stride: a smaller side leaves no pixel at its deepest level


def parse_hw(text: str, flag: str, square: bool = False) -> tuple[int, int]:
    """``(H, W)`` of a size flag (``--size`` of fdn.export, ``--crop`` of fdn.evaluate): ``HxW``, or ``S`` for
    ``SxS`` where ``square``; each side at least `MIN_SIDE` (smaller ones failed inside XLA with a traceback)."""
    from fdn.errors import InputError

    example = "512x512" + (" or 512" if square else "")
    try:
        sides = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"{flag} must be HxW, e.g. {example}, got {text!r}") from None
    if square and len(sides) == 1:
        sides *= 2
    if len(sides) != 2:
        raise InputError(f"{flag} must be HxW, e.g. {example}, got {text!r}")
    if min(sides) < MIN_SIDE:
        raise InputError(f"{flag} must be at least {MIN_SIDE}x{MIN_SIDE} (the encoder's stride), got {text!r}")
    return sides

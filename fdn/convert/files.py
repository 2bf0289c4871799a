"""Reading and writing official-format state dicts (``.pth`` / ``.pth.tar`` through torch, or ``.npz``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fdn.errors import UserError, one_line


class StateDictError(UserError, ValueError):
    """A state-dict file that cannot be read."""


def read_state_dict(path) -> dict[str, np.ndarray]:
    """A flat ``{key: numpy array}`` from a ``.npz`` or a torch file (torch only needed for the latter)."""
    path = Path(path)
    if not path.is_file():
        raise StateDictError(f"no such file: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise StateDictError(f"{path} is not a readable .npz file: {err}") from None
    try:
        import torch  # optional: only needed for .pth files
    except ImportError:
        raise StateDictError(
            f"reading {path.name} needs PyTorch, which fdn does not install by default; `pip install torch` "
            "(a CPU build is enough), or convert the file to .npz with numpy where torch is available"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged or unsafe files
        raise StateDictError(
            f"{path} could not be loaded by torch.load(weights_only=True) ({type(err).__name__}: {one_line(err)}); "
            "give an official PyTorch state dict (.pth/.pth.tar) or an .npz with the same keys"
        ) from None
    if not isinstance(obj, dict):
        raise StateDictError(f"{path} holds a {type(obj).__name__}, not a state dict")
    from fdn.convert.segmenter import unwrap_state_dict

    return unwrap_state_dict(obj)


def write_npz(path, state_dict: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **state_dict)
    return path

"""``candidates.jsonl``: one JSON line per finished candidate, appended, flushed and fsynced.

Why a plain append-only file and not the checkpoint: it is what people read (``jq``, pandas, the
leaderboard), and it must survive any kill. The search writes the line *before* it checkpoints, and the
checkpoint stores the file's byte length after that line. On resume, `truncate_to` cuts the file back to
that length, so a line written for a candidate whose checkpoint never landed (killed in between) disappears
and is written again when the candidate is redone: no line is ever duplicated, and a half-written line
(killed mid-write) is cut off too.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from fdn.errors import UserError
from fdn.run_records import FILENAME, read  # noqa: F401  (the file's name and reader: one source)


class LogMismatch(UserError, RuntimeError):
    """``candidates.jsonl`` is shorter than the checkpoint says: lines the checkpoint counts are gone."""


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN/inf become None (strict JSON has no NaN), numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """Appends records to ``WORKDIR/candidates.jsonl``; `size` is the byte length to store in checkpoints."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")

    def append(self, record: dict) -> int:
        """Writes one line durably; returns the file's byte length after it."""
        line = json.dumps(_clean(record), separators=(",", ":"), allow_nan=False) + "\n"
        self._file.write(line.encode())
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def truncate_to(workdir: str | os.PathLike, size: int) -> int:
    """Cuts ``candidates.jsonl`` back to ``size`` bytes (the checkpointed length); returns the bytes dropped.

    Longer is the normal case of a candidate in flight when the run was killed. Shorter means the log was
    edited, truncated or lost: `LogMismatch`, and nothing is changed (the lines cannot be made up again).
    """
    path = Path(workdir) / FILENAME
    current = path.stat().st_size if path.exists() else 0
    if current < size:
        raise LogMismatch(
            f"{path} has {current} bytes but the checkpoint in {Path(workdir) / 'checkpoints'} "
            f"recorded {size}: the log was truncated or replaced; restore it from a copy, or start a "
            "new --workdir (nothing was changed)"
        )
    if current > size:
        with open(path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
    return current - size

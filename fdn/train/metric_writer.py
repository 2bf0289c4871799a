"""Training scalars to ``WORKDIR/metrics.jsonl`` (one JSON line per step and kind) and to TensorBoard event
files in ``WORKDIR/tensorboard/`` (``fdn.train.tfevents``, no TensorFlow). Only process 0 writes.

On resume, lines of ``metrics.jsonl`` past the resumed step (written after the checkpoint the run resumes
from) are dropped, so the file tells one consistent history.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fdn.train.tfevents import EventWriter

FILENAME = "metrics.jsonl"


class MetricWriter:
    def __init__(self, workdir, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        workdir = Path(workdir)
        self.path = workdir / FILENAME
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines(keepends=True)
                    if line.endswith("\n") and _step_of(line) <= resume_step]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.path)
        self._file = open(self.path, "a")
        self._events = EventWriter(workdir / "tensorboard")

    def write(self, step: int, kind: str, values: dict) -> None:
        """``values`` (floats) under ``kind/`` tags: ``train/loss``, ``eval/miou``, ..."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        self._file.write(json.dumps({"step": int(step), "kind": kind, **clean}) + "\n")
        self._file.flush()
        self._events.scalars(step, {f"{kind}/{k}": v for k, v in values.items()})

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._events.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62

"""Training scalars to ``WORKDIR/metrics.jsonl`` (one JSON line per step and kind) and to TensorBoard event
files in ``WORKDIR/tensorboard/``. Only process 0 writes.

``metrics.jsonl`` is the record fdn itself reads (and is written synchronously); the event files are for
watching a run in TensorBoard. They are written with tensorboardX (no TensorFlow), one event per `write` that
carries all its scalars as ``simple_value``s. tensorboardX writes from a background thread and flushes every
``FLUSH_SECONDS``; `close` writes everything still pending.

On resume, lines of ``metrics.jsonl`` past the resumed step (written after the checkpoint the run resumes
from) are dropped, so the file tells one consistent history.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FILENAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
FLUSH_SECONDS = 10


class MetricWriter:
    def __init__(self, workdir, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        workdir = Path(workdir)
        self.path = workdir / FILENAME
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines(keepends=True)
                if line.endswith("\n") and _step_of(line) <= resume_step
            ]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.path)
        self._file = open(self.path, "a")
        # Imported here: tensorboardX imports torch when it is installed (seconds), and only writing needs it.
        from tensorboardX import FileWriter

        self._events = FileWriter(str(workdir / TENSORBOARD_DIR), flush_secs=FLUSH_SECONDS)

    def write(self, step: int, kind: str, values: dict) -> None:
        """``values`` (floats) under ``kind/`` tags: ``train/loss``, ``eval/miou``, ..."""
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        self._file.write(json.dumps({"step": int(step), "kind": kind, **clean}) + "\n")
        self._file.flush()
        from tensorboardX.proto.summary_pb2 import Summary

        self._events.add_summary(
            Summary(value=[Summary.Value(tag=f"{kind}/{k}", simple_value=v) for k, v in values.items()]),
            global_step=int(step),
        )

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._events.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62

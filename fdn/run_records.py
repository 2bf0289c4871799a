"""Reading a search's ``candidates.jsonl`` and ranking its designs: below both the search and training.

Why here and not in `fdn.search.run_log` (which writes the file): ``fdn.train --config.genotype=WORKDIR#rank``
reads a search's log, and training must not import the search (tests/test_house.py). The file format's name and
reader, and the one ranking rule that ``WORKDIR#rank`` and ``python -m fdn.leaderboard`` share, live here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fdn.errors import UserError

FILENAME = "candidates.jsonl"


class RunLogError(UserError, ValueError):
    """A ``candidates.jsonl`` with a complete line that is not a record: the file was edited or damaged."""


def read(workdir_or_file: str | os.PathLike) -> list[dict]:
    """All complete records; a torn last line (a run killed mid-write, not yet resumed) is skipped.

    A complete line (one that ends in a newline) that is not JSON is damage, not a torn write: stopping there
    silently made ``fdn.leaderboard`` rank only the records before it and ``WORKDIR#rank`` pick another design,
    so it is a `RunLogError`.
    """
    path = Path(workdir_or_file)
    if path.is_dir():
        path = path / FILENAME
    records = []
    if not path.exists():
        return records
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                raise RunLogError(
                    f"{path} line {number} is not a JSON record: the log was edited or damaged; restore it from a "
                    "copy (nothing was changed)"
                ) from None
    return records


def rank_key(best_reward: float, first_index: int) -> tuple:
    """The leaderboard's order of distinct designs: best reward first, ties by first appearance."""
    return (-float(best_reward), int(first_index))


def ranked_genotypes(records: list[dict]) -> list[list]:
    """The distinct genotypes of ``records`` (by hash) in leaderboard order (`rank_key`)."""
    best: dict[str, list] = {}
    for r in records:
        reward = float(r["reward"] or 0.0)
        entry = best.setdefault(r["hash"], [reward, r["index"], r["genotype"]])
        entry[0] = max(entry[0], reward)
    return [g for _, (reward, first, g) in sorted(best.items(), key=lambda kv: rank_key(kv[1][0], kv[1][1]))]

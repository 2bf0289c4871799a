"""Where a training run's genotype comes from: a released name, a literal, or ``WORKDIR#rank`` of a search.

``WORKDIR#rank`` is the rank-th best distinct genotype (1 = best) of the search in ``WORKDIR``, ranked as
``python -m fdn.leaderboard WORKDIR`` ranks them (best reward, ties by first appearance), from its
``candidates.jsonl``; a run still in progress is fine.
"""

from __future__ import annotations

from pathlib import Path

from fdn import genotype as gt
from fdn import run_records


def from_search(workdir, rank: int = 1) -> gt.Genotype:
    """The ``rank``-th best genotype of the search in ``workdir``."""
    workdir = Path(workdir).expanduser()
    if not (workdir / run_records.FILENAME).is_file():
        raise gt.GenotypeError(
            f"{workdir} holds no search ({run_records.FILENAME} is missing); give WORKDIR#rank with the "
            "--workdir of a python -m fdn.search run that has finished a candidate"
        )
    if rank < 1:
        raise gt.GenotypeError(f"a leaderboard rank starts at 1, got {rank}")
    rows = run_records.ranked_genotypes(run_records.read(workdir))
    if len(rows) < rank:
        raise gt.GenotypeError(
            f"the search in {workdir} has {len(rows)} distinct genotype(s); rank {rank} does not exist (give a rank "
            f"from 1 to {len(rows)}; python -m fdn.leaderboard {workdir} lists them)"
        )
    return gt.parse(rows[rank - 1])


def resolve(text) -> gt.Genotype:
    """A genotype from ``arch0``, a literal (list / JSON / log line) or ``WORKDIR#rank``."""
    if isinstance(text, str) and "#" in text and not text.lstrip().startswith("["):
        workdir, _, rank = text.rpartition("#")
        try:
            rank = int(rank)
        except ValueError:
            raise gt.GenotypeError(f"{text!r}: expected WORKDIR#rank with an integer rank") from None
        return from_search(workdir, rank)
    return gt.parse(text)

"""Stopping a search whose candidates all fail for the same reason (``failures.max_consecutive``).

One failed candidate is part of a search (reward 0, reason logged, the search goes on: paper.md 3). A long run
of failures with one reason is not: a missing file, a broken data set or a too-large batch makes every
candidate fail, and without this rule a 4000-candidate search would log 4000 zeros. The streak is read from
the log itself (`from_records`), so a resumed search continues the count where the last session stopped.
"""

from __future__ import annotations

import dataclasses
import re

from fdn.errors import UserError


class TooManyFailures(UserError, RuntimeError):
    """``failures.max_consecutive`` candidates in a row failed with the same reason."""


def reason_kind(reason: str) -> str:
    """The reason with its numbers masked: "NaN loss at step 17" and "... step 23" are the same failure."""
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", reason)


@dataclasses.dataclass
class FailureStreak:
    """The candidates that failed in a row with one reason (kind), ending at the last logged candidate."""

    reason: str | None = None
    count: int = 0

    def add(self, failure: str | None) -> None:
        if failure is None:
            self.reason, self.count = None, 0
        elif self.reason is not None and reason_kind(failure) == reason_kind(self.reason):
            self.count += 1
        else:
            self.reason, self.count = failure, 1

    @classmethod
    def from_records(cls, records) -> FailureStreak:
        streak = cls()
        for record in records:
            streak.add(record.get("failure"))
        return streak

    def check(self, limit: int, workdir) -> None:
        """Raises `TooManyFailures` once ``limit`` (> 0) failures in a row share a reason."""
        if limit > 0 and self.count >= limit:
            raise TooManyFailures(
                f"the last {self.count} candidates all failed: {' '.join(self.reason.split())}; the search stopped "
                f"(their log lines and the checkpoint are kept in {workdir}). Fix the cause and run the same command "
                "again to resume (a setting that decides results needs a new --workdir); "
                "--config.failures.max_consecutive=0 never stops"
            )

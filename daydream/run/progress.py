"""Progress of a run as its display sees it: the run's statistics plus the ledger's counts per stage
(total in scope, finished by anyone, pending), refreshed at most twice a second and handed to a
callback (the CLI draws it). The counts at the start are kept, so a resumed run shows what was
already done and counts its rate from what it does itself.
"""

from __future__ import annotations

import time
from typing import Callable

from daydream.ledger.store import Ledger
from daydream.run.options import RunOptions
from daydream.run.pending import pending_counts
from daydream.run.stats import RunStats

ProgressCallback = Callable[[RunStats, dict[str, dict[str, int]]], None]
_EVERY_S = 0.5


class Progress:
    """Calls ``callback(stats, final_counts)``: with ``{}`` while running (first at the start, with
    ``stats.started_counts`` set), the ledger's counts at the end."""

    def __init__(self, ledger: Ledger, options: RunOptions, stats: RunStats,
                 callback: ProgressCallback | None) -> None:
        self.ledger = ledger
        self.options = options
        self.stats = stats
        self.callback = callback
        self._at = 0.0

    def _counts(self) -> dict[str, dict[str, int]]:
        counts = pending_counts(self.ledger, self.options.cohort, self.options.stage)
        for name, c in counts.items():
            stage = self.stats.stages[name]
            stage.total = c["total"]
            stage.finished = c["completed"] + c["failed"]
            stage.pending = c["ready"] + c["blocked"]
        return counts

    def start(self) -> None:
        """The first report: what the ledger holds before this run does anything."""
        if self.callback is None:
            return
        counts = self._counts()
        for name in counts:
            stage = self.stats.stages[name]
            stage.done_before = stage.finished
        self.stats.started_counts = counts
        self._at = time.monotonic()
        self.callback(self.stats, {})

    def tick(self) -> None:
        """Report now, unless the last report is recent."""
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._at < _EVERY_S:
            return
        self._at = now
        self._counts()
        self.callback(self.stats, {})

    def final(self) -> None:
        """The last report, with the ledger's counts."""
        if self.callback is not None:
            self.callback(self.stats, self._counts())

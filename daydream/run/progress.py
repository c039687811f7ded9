"""Progress of a run as its display sees it: the run's statistics, refreshed with the ledger's
pending counts at most twice a second, handed to a callback (the CLI draws it)."""

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
    """Calls ``callback(stats, final_counts)``: with ``{}`` while running, the ledger's counts at the end."""

    def __init__(self, ledger: Ledger, options: RunOptions, stats: RunStats,
                 callback: ProgressCallback | None) -> None:
        self.ledger = ledger
        self.options = options
        self.stats = stats
        self.callback = callback
        self._at = 0.0

    def _counts(self) -> dict[str, dict[str, int]]:
        return pending_counts(self.ledger, self.options.cohort, self.options.stage)

    def tick(self) -> None:
        """Report now, unless the last report is recent."""
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._at < _EVERY_S:
            return
        self._at = now
        for name, c in self._counts().items():
            self.stats.stages[name].pending = c["ready"] + c["blocked"]
        self.callback(self.stats, {})

    def final(self) -> None:
        """The last report, with the ledger's counts."""
        if self.callback is not None:
            self.callback(self.stats, self._counts())

"""Feeding a run: which generations to start next, and waiting for work other runners hold.

Claims of dead workers come first (``RECLAIM_SQL``), then ready work stage by stage in plan order
(``PENDING_SQL``). Generations this run leaves alone (already in hand, on a stopped model, replay
misses) are stepped over, so work behind them is still reached. When nothing is startable but live
runners elsewhere hold claims of this run's scope, the run waits for them and says so now and then.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from daydream.ledger.store import Ledger
from daydream.run import claims
from daydream.ledger.store import iso_utc
from daydream.run.claims import worker_is_dead
from daydream.run.options import RunOptions
from daydream.run.pending import COHORT_FILTER, PENDING_SQL, RECLAIM_SQL, STAGE_ORDER, PendingGeneration
from daydream.run.stats import RunStats

# Seconds between two "waiting for …" lines when nothing changed.
_SAY_EVERY_S = 30


class Feed:
    """Finds startable work for one run."""

    def __init__(self, ledger: Ledger, options: RunOptions, stage_names: list[str], worker: dict[str, Any],
                 stats: RunStats, say: Callable[[str], None]) -> None:
        self.ledger = ledger
        self.options = options
        self.worker = worker
        self.stats = stats
        self.say = say
        self.stage_names = [options.stage] if options.stage else sorted(
            stage_names, key=lambda n: (STAGE_ORDER.get(n, 9), n))
        self._waiting_since: float | None = None
        self._waiting_said = (0.0, -1)

    def scope(self) -> tuple[str, dict[str, Any]]:
        """SQL conditions on ``g`` (gen_state) for this run's cohort and stage, and their parameters."""
        sql, params = "", {}
        if self.options.cohort:
            sql += " " + COHORT_FILTER
            params["cohort"] = self.options.cohort
        if self.options.stage:
            sql += " AND g.stage = :stage"
            params["stage"] = self.options.stage
        return sql, params

    def next(self, wanted: int, in_hand: int, startable: Callable[[PendingGeneration], bool]
             ) -> list[PendingGeneration]:
        """Up to ``wanted`` startable generations: claims to take over first, then ready work.
        ``in_hand`` is how many this run already holds (pages are made big enough to step over
        them in one go)."""
        now = iso_utc(datetime.now(timezone.utc))
        cohort = COHORT_FILTER if self.options.cohort else ""
        page = wanted + in_hand
        params: dict[str, Any] = {"limit": page}
        if self.options.cohort:
            params["cohort"] = self.options.cohort
        found: list[PendingGeneration] = []
        with self.ledger.backend.read() as conn:
            reclaim_sql = RECLAIM_SQL.format(cohort=cohort, stage="AND g.stage = :stage" if self.options.stage else "")
            reclaim_params = {**params, "now": now, "local": claims.local_claims_pattern(self.worker),
                              "run": self.worker["run"]}
            if self.options.stage:
                reclaim_params["stage"] = self.options.stage
            for row in conn.execute(reclaim_sql, reclaim_params).fetchall():
                gen = PendingGeneration.from_row(row)
                stale, expired = row[-2:]
                # A running claim is takeable when its heartbeat is stale, its (row-less) lease
                # expired, or its process is gone from this machine.
                if startable(gen) and (stale or expired or worker_is_dead(gen.worker)):
                    found.append(gen)
            for name in self.stage_names:
                after = 0
                while len(found) < wanted:
                    rows = conn.execute(PENDING_SQL.format(cohort=cohort),
                                                {**params, "stage": name, "after": after}).fetchall()
                    for row in rows:
                        gen = PendingGeneration.from_row(row)
                        after = gen.planned_seq
                        if startable(gen):
                            found.append(gen)
                    if len(rows) < page:
                        break
                if len(found) >= wanted:
                    break
        return found[:wanted]

    def wait_for_others(self) -> bool:
        """True (and say so, now and then) while other live workers hold claims of this scope."""
        scope, params = self.scope()
        with self.ledger.backend.read() as conn:
            held = claims.held_elsewhere(conn, self.worker["run"], scope,
                                         {**params, "now": iso_utc(datetime.now(timezone.utc))})
        if not held.claims:
            self.end_wait()
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        said_at, said_n = self._waiting_said
        if held.claims != said_n or now - said_at >= _SAY_EVERY_S:
            self._waiting_said = (now, held.claims)
            beat = f"; last heartbeat {held.beat_age_s:.0f} s ago" if held.beat_age_s is not None else ""
            takeover = (f"; if they stopped now they would be taken over within {held.takeover_in_s:.0f} s"
                        if held.takeover_in_s is not None else "")
            waited = f"; waited {now - self._waiting_since:.0f} s so far" if now - self._waiting_since >= 1 else ""
            self.say(f"waiting for {held.claims} claim(s) held by other workers "
                     f"({', '.join(held.workers)}{beat}){takeover}{waited}")
        return True

    def end_wait(self) -> None:
        """Work came (or the run ends): add the time waited to the run's statistics."""
        if self._waiting_since is not None:
            self.stats.waited_s += time.monotonic() - self._waiting_since
            self._waiting_since = None
            self._waiting_said = (0.0, -1)

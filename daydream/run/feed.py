"""Feeding a run: which generations to start next, and waiting for work other runners hold.

Claims of dead workers come first (``RECLAIM_SQL``), then ready work stage by stage, each stage
in ``gen_id`` order (``PENDING_SQL``: neighbours in the ledger's B-trees share a commit).
Generations this run leaves alone (already in hand, on a stopped model, replay misses) are stepped
over, so work behind them is still reached. When nothing is startable but live
runners elsewhere hold claims of this run's scope, the run waits for them and says so now and then.
"""

from __future__ import annotations

import time
import zlib
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
# Seconds between two looks at which other workers are live (to share out ready work).
_PEERS_EVERY_S = 2.0
# At most this many rows per page when reading ahead for several workers.
_MAX_PAGE = 4096


def share_of(gen_id: str, workers: int) -> int:
    """Which of ``workers`` live workers takes ``gen_id`` first (a stable hash of the id)."""
    return zlib.crc32(gen_id.encode()) % workers


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
        self._peers = (-1e9, 1, 0)  # (looked at, live workers, our place among them)

    def _note_peers(self, live: list[str]) -> None:
        """Remember how many workers are live and our place among them (by run id)."""
        own = self.worker["run"]
        ids = sorted({*live, own})
        self._peers = (time.monotonic(), len(ids), ids.index(own))

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
        backend = self.ledger.backend
        # Several live workers read the same ready work in the same order: each would claim what
        # the others claim at the same moment, and most claims would be refused. Each reads ahead
        # for all of them and starts with its own share (by a hash of the id); the others' shares
        # follow, so nothing waits on a worker that stopped. Who is live is looked at now and then.
        if self._peers[0] < 0:  # the first time, before choosing the page size
            self._note_peers([r[0] for r in backend.query(claims.LIVE_WORKERS)])
        looked_at, workers, place = self._peers
        page = min((wanted + in_hand) * workers, max(_MAX_PAGE, wanted + in_hand))
        params: dict[str, Any] = {"limit": page}
        if self.options.cohort:
            params["cohort"] = self.options.cohort
        reclaim_params = {**params, "now": now, "local": claims.local_claims_pattern(self.worker),
                          "run": self.worker["run"]}
        if self.options.stage:
            reclaim_params["stage"] = self.options.stage
        pending_sql = PENDING_SQL.format(cohort=cohort)
        # The first reads go together (one round trip to a server): who is live (when due),
        # claims to take over, and the first page of each stage.
        statements = [(RECLAIM_SQL.format(cohort=cohort, stage="AND g.stage = :stage" if self.options.stage else ""),
                       reclaim_params)]
        for name in self.stage_names:
            statements.append((pending_sql, {**params, "stage": name, "after": ""}))
        peers_due = time.monotonic() - looked_at > _PEERS_EVERY_S
        if peers_due:
            statements.append((claims.LIVE_WORKERS, {}))
        results = backend.query_many(statements)
        if peers_due:
            self._note_peers([r[0] for r in results.pop()])
            _, workers, place = self._peers
        found: list[PendingGeneration] = []
        for row in results[0]:
            gen = PendingGeneration.from_row(row)
            stale, expired = row[-2:]
            # A running claim is takeable when its heartbeat is stale, its (row-less) lease
            # expired, or its process is gone from this machine.
            if startable(gen) and (stale or expired or worker_is_dead(gen.worker)):
                found.append(gen)
        others: list[PendingGeneration] = []
        for n, name in enumerate(self.stage_names):
            after = ""  # the last gen_id seen: the next page starts after it
            rows: list[tuple] | None = results[1 + n]
            while len(found) < wanted:
                if rows is None:
                    rows = backend.query(pending_sql, {**params, "stage": name, "after": after})
                for row in rows:
                    gen = PendingGeneration.from_row(row)
                    after = gen.gen_id
                    if startable(gen):
                        if workers == 1 or share_of(gen.gen_id, workers) == place:
                            found.append(gen)
                        else:
                            others.append(gen)
                if len(rows) < page:
                    break
                rows = None
            if len(found) >= wanted:
                break
        found.extend(others)
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

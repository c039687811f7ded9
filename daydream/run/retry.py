"""``daydream rerun``: start a new attempt of finished generations (``GenerationRetried``).

The old attempt stays in the history; the next ``daydream run`` performs the new one.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from daydream.errors import NotFound
from daydream.ledger.events import GenerationRetried
from daydream.ledger.store import Ledger, NewEvent


def retry_generations(ledger: Ledger, gen_ids: list[str] | None = None, *, cohort: str | None = None,
                      stage: str | None = None, failed_only: bool = False, reason: str = "rerun requested"
                      ) -> list[str]:
    """Start a new attempt for the given generations (``GenerationRetried``); the old one stays.

    Give ``gen_ids``, or ``cohort`` (optionally with ``stage`` and ``failed_only``). Generations
    still planned or running are left alone: their current attempt has not finished. Returns the
    ids that will run again; an unknown id raises ``NotFound`` and records nothing.
    """

    def build(cur: sqlite3.Cursor) -> tuple[list[NewEvent], list[str]]:
        rows: list[tuple] = []
        if gen_ids:
            missing = []
            for gid in gen_ids:
                row = cur.execute("SELECT gen_id, attempt, status FROM gen_state WHERE gen_id = ?", (gid,)).fetchone()
                if row is None:
                    missing.append(gid)
                else:
                    rows.append(row)
            if missing:
                raise NotFound(f"no generation with id {', '.join(missing)} in this ledger")
        else:
            sql = "SELECT g.gen_id, g.attempt, g.status FROM gen_state g WHERE 1=1"
            params: list[Any] = []
            if cohort:
                sql += " AND g.gen_id IN (SELECT gen_id FROM cohort_members WHERE cohort_id = ?)"
                params.append(cohort)
            if stage:
                sql += " AND g.stage = ?"
                params.append(stage)
            rows = cur.execute(sql, params).fetchall()
        events = []
        for gid, attempt, status in rows:
            if status == "running" or status == "planned":
                continue  # nothing to retry: it has not finished its current attempt
            if failed_only and status != "failed":
                continue
            events.append(GenerationRetried(gen_id=gid, attempt=(attempt or 1) + 1, previous_attempt=attempt or 1,
                                            reason=reason).new())
        return events, []

    stored = ledger.transact(build)
    return [e.payload["gen_id"] for e in stored]

"""Rebuilding the projections from the events: they are derived state, and this proves it.

``gen_state``, ``cohort_members`` and ``combos`` (and the read-side counters ``cohort_totals`` and
``cohort_essay_scores`` that triggers keep from them) are a function of the events. ``rebuild``
empties them and feeds every projected event, in seq order, through ``projection_feed`` — the very
path each append uses (migration 0004) — in one write transaction. ``check`` does the same inside a
transaction it then rolls back, and says which rows differ from what is stored: a projection that
drifted (hand edits, a bug since fixed) shows up there, and ``rebuild`` repairs it. Events are
never touched.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from daydream.ledger import Ledger

# Base projections first: the read-side counters follow them through their own triggers.
TABLES = ("gen_state", "cohort_members", "combos", "cohort_totals", "cohort_essay_scores")
# Counter rows that say "nothing" (a generation that left a cohort leaves zeros behind): the same
# facts whether present or not.
_EMPTY = {"cohort_totals": "generations = 0 AND calls = 0", "cohort_essay_scores": "n = 0"}
_REPLAY = ("INSERT INTO projection_feed SELECT seq, stream, version, type, payload, recorded_at, causation_seq "
           "FROM events WHERE type IN (SELECT type FROM projected_types) ORDER BY seq")


@dataclass
class TableDrift:
    """How one projection table differs from a rebuild: rows only in the rebuild, rows only stored."""

    table: str
    columns: list[str]
    missing: list[tuple[Any, ...]] = field(default_factory=list)
    unexpected: list[tuple[Any, ...]] = field(default_factory=list)

    def describe(self, limit: int = 3) -> str:
        """One line: counts, and the key (first column) of the first differing rows."""
        keys = sorted({str(r[0]) for r in self.missing + self.unexpected})
        shown = ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
        return (f"{self.table}: {len(self.missing)} row(s) missing, {len(self.unexpected)} row(s) that the "
                f"events do not give ({self.columns[0]} {shown})")


@dataclass
class Outcome:
    """What a rebuild or a check found: rows per table after the rebuild, and the drift before it."""

    rows: dict[str, int]
    drift: list[TableDrift]
    events: int


class _RolledBack(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def _snapshot(cur: sqlite3.Cursor, table: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    where = f" WHERE NOT ({_EMPTY[table]})" if table in _EMPTY else ""
    result = cur.execute(f"SELECT * FROM {table}{where}")
    columns = [d[0] for d in result.description]
    return columns, Counter(tuple(r) for r in result)


def _rebuild_in(cur: sqlite3.Cursor) -> Outcome:
    before = {t: _snapshot(cur, t) for t in TABLES}
    for table in TABLES:
        cur.execute(f"DELETE FROM {table}")
    cur.execute(_REPLAY)
    events = cur.execute("SELECT COUNT(*) FROM events WHERE type IN (SELECT type FROM projected_types)").fetchone()[0]
    drift, rows = [], {}
    for table in TABLES:
        columns, after = _snapshot(cur, table)
        rows[table] = sum(after.values())
        old = before[table][1]
        if after != old:
            drift.append(TableDrift(table, columns, sorted((after - old).elements(), key=repr),
                                    sorted((old - after).elements(), key=repr)))
    return Outcome(rows, drift, events)


def rebuild(ledger: Ledger) -> Outcome:
    """Recompute every projection from the events, in one transaction; return what changed."""
    return ledger._write(_rebuild_in)


def check(ledger: Ledger) -> Outcome:
    """Rebuild inside a transaction that is rolled back: the ledger is left exactly as it was."""
    def work(cur: sqlite3.Cursor) -> None:
        raise _RolledBack(_rebuild_in(cur))

    try:
        ledger._write(work)
    except _RolledBack as done:
        return done.outcome
    raise AssertionError("unreachable: the check always rolls back")

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
from dataclasses import dataclass, field
from typing import Any

from daydream.ledger import PROJECT_EVENTS, Ledger

# Base projections first: the read-side counters follow them through their own triggers.
TABLES = ("gen_state", "cohort_members", "combos", "cohort_totals", "cohort_essay_scores")
# Counter rows that say "nothing" (a generation that left a cohort leaves zeros behind): the same
# facts whether present or not.
_EMPTY = {"cohort_totals": "generations = 0 AND calls = 0", "cohort_essay_scores": "n = 0"}


@dataclass
class TableDrift:
    """How one projection table differs from a rebuild.

    ``missing``: rows the events give that were not stored; ``unexpected``: stored rows the events
    do not give. The ``*_sample`` lists hold the first few of each.
    """

    table: str
    columns: list[str]
    missing: int
    unexpected: int
    missing_sample: list[tuple[Any, ...]] = field(default_factory=list)
    unexpected_sample: list[tuple[Any, ...]] = field(default_factory=list)

    def describe(self, limit: int = 3) -> str:
        """One line: counts, and the key (first column) of the first differing rows."""
        keys = sorted({str(r[0]) for r in self.missing_sample + self.unexpected_sample})
        sampled = len(self.missing_sample) + len(self.unexpected_sample)
        more = len(keys) > limit or self.missing + self.unexpected > sampled
        shown = ", ".join(keys[:limit]) + (" …" if more else "")
        return (f"{self.table}: {self.missing} row(s) missing, {self.unexpected} row(s) that the "
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


def _kept(table: str, source: str) -> str:
    where = f" WHERE NOT ({_EMPTY[table]})" if table in _EMPTY else ""
    return f"SELECT * FROM {source}{where}"


def _rows(cur: sqlite3.Cursor, sql: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in cur.execute(sql)), key=repr)


def _rebuild_in(cur: sqlite3.Cursor, sample: int = 20) -> Outcome:
    # The stored rows wait in temporary tables (SQLite's temp store, not Python memory: a 1M-event
    # ledger's projections are hundreds of MB as Python tuples), then SQL tells the differences.
    for table in TABLES:  # all kept before any is emptied: emptying one moves the counters
        cur.execute(f"DROP TABLE IF EXISTS temp.before_{table}")
        cur.execute(f"CREATE TEMP TABLE before_{table} AS {_kept(table, table)}")
    for table in TABLES:
        cur.execute(f"DELETE FROM {table}")
    cur.execute(PROJECT_EVENTS, (0,))  # what every append runs for its own events: here, all of them
    events = cur.execute("SELECT COUNT(*) FROM events WHERE type IN (SELECT type FROM projected_types)").fetchone()[0]
    drift, rows = [], {}
    try:
        for table in TABLES:
            after, before = _kept(table, table), _kept(table, f"temp.before_{table}")
            rows[table] = cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            n_missing = cur.execute(f"SELECT COUNT(*) FROM ({after} EXCEPT {before})").fetchone()[0]
            n_unexpected = cur.execute(f"SELECT COUNT(*) FROM ({before} EXCEPT {after})").fetchone()[0]
            if n_missing or n_unexpected:
                columns = [d[0] for d in cur.execute(f"SELECT * FROM {table} LIMIT 0").description]
                drift.append(TableDrift(table, columns, n_missing, n_unexpected,
                                        _rows(cur, f"{after} EXCEPT {before} LIMIT {sample}"),
                                        _rows(cur, f"{before} EXCEPT {after} LIMIT {sample}")))
    finally:
        for table in TABLES:
            cur.execute(f"DROP TABLE IF EXISTS temp.before_{table}")
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

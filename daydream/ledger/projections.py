"""Rebuilding the projections from the events: they are derived state, and this proves it.

``gen_state``, ``cohort_members`` and ``combos`` (and the read-side counters ``cohort_totals`` and
``cohort_essay_scores`` that triggers keep from them) are a function of the events. ``rebuild``
empties them and feeds every projected event, in seq order, through ``projection_feed`` — the very
path each append uses (migration 0004) — in one write transaction. ``check`` does the same inside a
transaction it then rolls back, and says which rows differ from what is stored: a projection that
drifted (hand edits, a bug since fixed) shows up there, and ``rebuild`` repairs it. Events are
never touched, and a rebuild is refused when the events fail verification or the projection
trigger was altered: it would otherwise adopt tampered data as the truth.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daydream.ledger import db
from daydream.errors import LedgerIntegrityError
from daydream.ledger.store import PROJECT_EVENTS, Ledger

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


def ensure_trustworthy(ledger: Ledger) -> None:
    """Refuse to rebuild from a ledger whose events or projection machinery were altered.

    A rebuild replays the events through the projection trigger: events that fail verification
    (a score edited with the append-only triggers dropped) or an edited trigger would be adopted
    as the truth, and every report would publish them. Raises ``LedgerIntegrityError``.
    """
    try:
        ledger.check_integrity()
    except LedgerIntegrityError as exc:
        raise LedgerIntegrityError(exc.seq, f"{exc.reason}; refusing to rebuild the projections from events "
                                            "that fail verification (they would adopt the altered data): "
                                            "restore the ledger from a backup") from None
    drift = db.schema_drift(ledger.backend)
    if drift:
        more = f" (and {len(drift) - 1} more)" if len(drift) > 1 else ""
        raise LedgerIntegrityError(None, f"the schema was altered: {drift[0]}{more}; refusing to rebuild the "
                                         "projections through it: run 'daydream verify --full'")


def rebuild(ledger: Ledger) -> Outcome:
    """Recompute every projection from the events, in one transaction; return what changed.

    Only from a ledger that verifies (``ensure_trustworthy``): a projection that drifted is
    repaired, altered events are never adopted.
    """
    ensure_trustworthy(ledger)
    return ledger._write(_rebuild_in)


def check(ledger: Ledger) -> Outcome:
    """Rebuild inside a transaction that is rolled back: the ledger is left exactly as it was.

    A ledger opened read-only is checked on a temporary copy instead (brought to the current
    schema there), since even a rolled-back transaction needs the write lock.
    """
    if ledger.readonly:
        return _check_copy(ledger)

    def work(cur: sqlite3.Cursor) -> None:
        raise _RolledBack(_rebuild_in(cur))

    try:
        ledger._write(work)
    except _RolledBack as done:
        return done.outcome
    raise AssertionError("unreachable: the check always rolls back")


def _check_copy(ledger: Ledger) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="daydream-check-") as folder:
        copy = Path(folder) / "ledger.db"
        ledger.backup(copy)
        scratch = Ledger.open(copy)
        try:
            return check(scratch)
        finally:
            scratch.close()
